# Sourced, not run: the settings of Verdant's static release build, in one place. images/build.sh
# builds the images' binaries with them, and .ci/run builds its benchmarks and binaries with
# them too, so Cargo compiles each dependency once for both (the flags are part of what Cargo
# fingerprints). Needs $root, the workspace root.
#
# Static binaries: glibc linked in (crt-static; the gnu target is the one installed). With a
# target given, RUSTFLAGS reach only the target's code, not build scripts or proc macros, and
# the output goes to target/x86_64-unknown-linux-gnu/, apart from the normal build. Paths are
# remapped so the checkout's and Cargo's locations end up neither in panic messages nor in the
# images' digests.
verdant_static_target=x86_64-unknown-linux-gnu
verdant_static_env() {
  export CARGO_BUILD_TARGET=$verdant_static_target
  unset CARGO_ENCODED_RUSTFLAGS # it would override RUSTFLAGS
  export RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$root=/verdant"
}
