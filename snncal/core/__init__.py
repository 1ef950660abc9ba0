"""The converter: graph rewrites, the IF neuron, the engine, observers, calibration, evaluation and
export. It never imports the ANN side (``snncal.ann``) or the product (``snncal.app``)."""
