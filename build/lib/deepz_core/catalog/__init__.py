"""Galaxy catalogues: the Catalog/Exposures model, named columns, file formats, column mapping,
the import report, uploads, the photometric screen and the network's input features."""
