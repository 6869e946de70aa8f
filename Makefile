# crew's front door. On a fresh Debian machine: `make run` and `make test`.
# Every target installs what is missing first (make deps), then builds through CMake presets.

SHELL := /bin/bash
JOBS ?= $(shell nproc)

# Debian packages crew needs to build, test and benchmark (see docs and DESIGN).
PACKAGES := build-essential cmake ninja-build pkg-config git \
            libuv1-dev nlohmann-json3-dev libsimdjson-dev node-llhttp libgtest-dev libbenchmark-dev \
            nodejs npm wrk nginx-light iputils-ping procps libssl-dev \
            clang libclang-rt-14-dev libspng-dev libturbojpeg0-dev zlib1g-dev ffmpeg

.PHONY: deps build debug test test-asan test-tsan fuzz run bench clean

deps:
	@bash scripts/deps.sh $(PACKAGES)

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

debug: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

test: build
	@ctest --preset release

test-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)
	@ctest --preset asan

test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS)
	@ctest --preset tsan

# The libFuzzer targets in fuzz/ (clang), each run for FUZZ_SECONDS (docs/fuzzing.md).
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@bash fuzz/run.sh build-fuzz/bin $(FUZZ_SECONDS)

# make run ARGS="--port 8080 --workers 4" passes flags to crew-server.
run: build
	@exec build/bin/crew-server $(ARGS)

bench: build
	@bash bench/run.sh build/bin

clean:
	@rm -rf build build-debug build-asan build-tsan build-fuzz build-clang
