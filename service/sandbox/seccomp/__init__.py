"""The sandbox's syscall policy as data (`policy.toml`), compiled on the host with libseccomp
into the zygote's filter and generated into the Docker profile (docs/design.md §4)."""
