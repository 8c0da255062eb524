"""One module per chapter of the book, named after its notebook (``book/NN_<name>.ipynb``)."""
