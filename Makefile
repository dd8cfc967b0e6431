# Two entry points: `make demo` (the embedded default run) and `make test`.
# Both bootstrap uv when it is missing and install exactly what uv.lock pins.

UV = $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export RAY_ENABLE_UV_RUN_RUNTIME_ENV = 0
RUN = $(UV) run --frozen

.PHONY: setup demo test test-fast lint bench gpu-check clean

setup:
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || python3 -m pip install --user --quiet uv
	$(UV) sync --frozen

demo: setup
	rm -rf runs/demo
	$(RUN) clipstream pretrain --epochs 3 --out runs/demo

test: setup
	$(RUN) ruff check pipelines workers models tests
	$(RUN) mypy pipelines workers models
	$(RUN) pytest -q --durations=15

test-fast: setup
	$(RUN) pytest -q -m "not slow and not ray"

lint: setup
	$(RUN) ruff check pipelines workers models tests
	$(RUN) mypy pipelines workers models

bench: setup
	$(RUN) clipstream bench --out runs/bench

gpu-check:
	bash tests/gpu/check.sh runs/gpu-check

clean:
	rm -rf runs .pytest_cache
