"""Loaders for file formats beyond plain text: PDF, Office, spreadsheets, e-books, e-mail, images (OCR).

Each module holds the loaders of one family; :mod:`ragkit.ingest.registry` names them by
``"module:function"``, so a format's libraries are imported only when a file of it is read.
"""
