"""Catalogue file formats, one module per format (like ``astropy.io``): each reads a whole file
(``read``), counts its rows, iterates over a row range in bounded-memory chunks (``iter_rows``)
and writes (``write``), all with the same column layout (docs/design.md, Catalogue). The format of
a file is chosen by ``deepz_core.catalog.io`` from its extension."""
