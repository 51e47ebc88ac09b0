#!/usr/bin/env python3
"""The characteristic polynomial of xoshiro256's state update, for
lib/core/rng.c's jump-ahead (rng_skip).

The update s' = T s is linear over GF(2), so every bit of the state follows a
linear recurrence whose minimal polynomial divides T's characteristic
polynomial; for xoshiro256 (period 2^256 - 1) it has degree 256 and is the
characteristic polynomial itself. Berlekamp-Massey over 1024 values of one
state bit finds it; the script then checks that it annihilates the whole
state (sum of p_i T^i s = 0) and prints the four words rng.c holds (the x^256
term left out). Usage: python3 scripts/xoshiro-charpoly.py
"""
import random

MASK = (1 << 64) - 1


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


def step(s):
    s0, s1, s2, s3 = s
    t = (s1 << 17) & MASK
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    return [s0, s1, s2, rotl(s3, 45)]


def berlekamp_massey(bits):
    """Connection polynomial c (c[0] = 1) and length L of the shortest LFSR."""
    n = len(bits)
    c, b = [0] * n, [0] * n
    c[0] = b[0] = 1
    length, m = 0, -1
    for i in range(n):
        d = bits[i]
        for j in range(1, length + 1):
            d ^= c[j] & bits[i - j]
        if d:
            t = c[:]
            for j in range(n - i + m):
                c[i - m + j] ^= b[j]
            if length <= i // 2:
                length, m, b = i + 1 - length, i, t
    return c[: length + 1], length


def main():
    rng = random.Random(1)
    s = [rng.getrandbits(64) for _ in range(4)]
    bits = []
    for _ in range(1024):
        bits.append(s[0] & 1)
        s = step(s)
    c, degree = berlekamp_massey(bits)
    assert degree == 256, degree
    p = sum(1 << (degree - i) for i, ci in enumerate(c) if ci)   # x^L C(1/x)
    s = [rng.getrandbits(64) for _ in range(4)]
    acc = [0, 0, 0, 0]
    for i in range(degree + 1):
        if p >> i & 1:
            acc = [a ^ b for a, b in zip(acc, s)]
        s = step(s)
    assert acc == [0, 0, 0, 0], "does not annihilate the state"
    print(", ".join("0x%016xull" % (p >> (64 * w) & MASK) for w in range(4)))


if __name__ == "__main__":
    main()
