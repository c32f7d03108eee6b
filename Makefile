# ssd_plugin: `make demo` (set up, train and score the demo) and `make test` (set up, lint, test).
# Everything lives in .venv inside the checkout; a second `make setup` takes seconds.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# --isolated: ignore this machine's pip.conf / PIP_* settings (a local CPU torch wheel without
# a matching torchvision would win otherwise); the constraints keep pkg_resources available.
PIP := $(PY) -m pip install --isolated --disable-pip-version-check --progress-bar off \
	-c requirements/constraints.txt
STACK_STAMP := $(VENV)/.stack-installed
PLUGIN_STAMP := $(VENV)/.plugin-installed
PLUGIN_SRC := setup.py MANIFEST.in $(shell find ssd_plugin ssd_plugin_cli configs tools -type f \
	\( -name '*.py' -o -name '*.sh' -o -name '*.yml' \) -not -path '*/.mim/*' 2>/dev/null)
DEMO_DIR ?= work_dirs/demo
# make demo AMP=0: the float32 demo (default: --amp, bf16 where the CPU has it natively)
AMP ?= 1
PYTEST_ARGS ?= -n 2
# The tests whose numerics or code path depend on the CPU's instruction set (bf16 autocast, the
# float32 convolutions' summation order, int8), run again by `make test-isa` as on an AVX2-only
# CPU (no AVX512, VNNI or native bf16), whatever CPU runs CI: tools/cpu_kind/run_as.sh masks
# CPUID for every library (ONNX Runtime's int8 kernels included) where the CPU offers CPUID
# faulting, and caps oneDNN and ATen through their environment everywhere.
# (tests/test_models but its DDP test, which checks gloo's gradient averaging, not arithmetic.)
ISA_TESTS ?= tests/test_engine/test_amp.py tests/test_deploy tests/test_tools/test_export_onnx.py \
	tests/test_models/test_backbones tests/test_models/test_dense_heads \
	tests/test_models/test_necks tests/test_models/test_task_modules \
	tests/test_models/test_other_backbones.py \
	tests/test_models/test_losses/test_multibox_loss_module.py \
	tests/test_caffe/test_fusion.py tests/test_caffe/test_opencv_parity.py

.PHONY: setup lint format test test-isa demo bench clean

setup: $(PLUGIN_STAMP)

$(STACK_STAMP): requirements/stack.txt requirements/tests.txt requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -q 'setuptools<81' wheel ninja 'numpy<3'
	$(PIP) -q torch==2.13.0 torchvision==0.28.0
	# mmcv 2.1.0 has no reachable wheel: build it with its C++ ops against the torch above
	# (about 10 minutes on 2 cores with Python's -g, once; pip reuses the built wheel from its
	# cache after that). -g0 after Python's own CFLAGS: no debug info, the same machine code
	# (GCC's -g never changes it), half the compile time of each torch-header-heavy op file.
	CFLAGS="$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")') -g0" \
		MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) -q --no-build-isolation mmcv==2.1.0
	$(PIP) -q -r requirements/stack.txt -r requirements/tests.txt
	$(PY) -c "import mmcv.ops, mmdet, mmengine, torchvision.ops"
	touch $@

$(PLUGIN_STAMP): $(STACK_STAMP) $(PLUGIN_SRC)
	# A regular (not editable) install: mim finds tools/ and configs/ through ssd_plugin/.mim.
	$(PIP) -q --no-deps --no-build-isolation .
	touch $@

lint: $(STACK_STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

format: $(STACK_STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS) tests
	$(MAKE) --no-print-directory test-isa

test-isa: setup
	bash tools/cpu_kind/run_as.sh avx2 $(PY) -m pytest $(PYTEST_ARGS) $(ISA_TESTS)

demo: setup
	DEMO_AMP=$(AMP) bash tools/run_demo.sh $(DEMO_DIR)

bench: setup
	$(PY) tools/benchmarks/bench_head.py
	$(PY) tools/benchmarks/bench_transforms.py

clean:
	rm -rf $(VENV) build ssd_plugin/.mim *.egg-info work_dirs
