# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist; a failure is one line saying what to do.
FMNIST := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@[ -d $(FMNIST) ] || { command -v apt-get >/dev/null && \
		{ apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } \
		>/tmp/snncal-apt.log 2>&1 && [ -d $(FMNIST) ]; } || { \
		echo "make demo: Fashion-MNIST is not in $(FMNIST) and 'apt-get install dataset-fashion-mnist' failed (log: /tmp/snncal-apt.log); install it as root, or run '$(BIN)/snncal quickstart --data DIR' on a CIFAR-10 ImageFolder copy" >&2; exit 2; }

demo: $(STAMP) fashion-mnist
	$(BIN)/snncal quickstart --out runs/quickstart

test: $(STAMP)
	$(BIN)/ruff check snncal tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
