"""The ANN side: the model zoo, data sets and the paper's training recipe. It may use the core,
never the product (``snncal.app``)."""
