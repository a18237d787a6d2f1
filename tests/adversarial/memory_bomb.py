"""Allocates (and touches) 64 MiB blocks until refused, at most 3 GiB."""

blocks = []
for _ in range(48):
    blocks.append(bytearray(64 << 20))
print("allocated", 64 * len(blocks), "MiB")
