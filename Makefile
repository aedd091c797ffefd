# The two commands the README opens with: `make repro` (main job) and `make test` (tests).
# Both set up .venv first (scripts/setup.sh; a no-op when it is up to date).
VENV := .venv/bin
# Stages call `incbench`, so the venv's bin goes first on PATH for everything make runs.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup repro repro-ml-1m repro-ml-1m-mf repro-ml-1m-lsat-mf test lint bench
setup:
	bash scripts/setup.sh

repro: setup
	$(VENV)/dvc repro
	$(VENV)/python scripts/sync_readme.py

# Paper scale (profiles/ml-1m, README "Paper scale: ml-1m"): every stage of the profile, or
# only its mf part and the report (what a 2-core CPU carries).
repro-ml-1m: setup
	$(VENV)/dvc repro profiles/ml-1m/dvc.yaml

repro-ml-1m-mf: setup
	$(VENV)/dvc repro --glob 'profiles/ml-1m/dvc.yaml:run@ml-1m-mf-*'
	$(VENV)/dvc repro --glob 'profiles/ml-1m/dvc.yaml:reference@*'
	$(VENV)/dvc repro -s profiles/ml-1m/dvc.yaml:report

# The LSAT preset on ml-1m (profiles/ml-1m-lsat, README "Time windows"): its mf part and report.
repro-ml-1m-lsat-mf: setup
	$(VENV)/dvc repro --glob 'profiles/ml-1m-lsat/dvc.yaml:run@ml-1m-mf-*'
	$(VENV)/dvc repro --glob 'profiles/ml-1m-lsat/dvc.yaml:reference@*'
	$(VENV)/dvc repro -s profiles/ml-1m-lsat/dvc.yaml:report

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

# The tests, plus the benchmark files run once each at a small size (--benchmark-disable), so
# they stay correct without slowing CI. `make bench` runs them for real.
test: lint
	INCBENCH_BENCH_ROWS=200000 $(VENV)/python -m pytest -q tests benchmarks --benchmark-disable

bench: setup
	$(VENV)/python -m pytest benchmarks --benchmark-only --benchmark-json=results/benchmarks.json -s
