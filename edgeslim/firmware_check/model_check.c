/* Start-up check for a model exported by `edgeslim export-firmware`: length and sha256 of the
 * array, and (on a host, given a path) a byte comparison with the .tflite it came from.
 * Build: cc -O2 -DMODEL_SYMBOL=<symbol> -DMODEL_HEADER='"<symbol>.h"' model_check.c <symbol>.c */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include MODEL_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define MODEL_ARRAY CAT(MODEL_SYMBOL, _tflite)
#define MODEL_LEN CAT(MODEL_SYMBOL, _tflite_len)

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
    int i;
    for (i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
    for (i = 0; i < 64; i++) {
        t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256_hex(const unsigned char *data, size_t len, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    unsigned char tail[128] = {0};
    size_t full = len / 64 * 64, rest = len - full, tail_len;
    uint64_t bits = (uint64_t)len * 8;
    int i;
    for (size_t off = 0; off < full; off += 64) block(h, data + off);
    memcpy(tail, data + full, rest);
    tail[rest] = 0x80;
    tail_len = rest + 9 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < tail_len; off += 64) block(h, tail + off);
    for (i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", h[i]);
}

int main(int argc, char **argv) {
    char hex[65];
    if (MODEL_LEN != MODEL_EXPECTED_LEN) {
        printf("FAIL: length %zu, header says %u\n", (size_t)MODEL_LEN, (unsigned)MODEL_EXPECTED_LEN);
        return 1;
    }
    if (((uintptr_t)MODEL_ARRAY) % 16 != 0) {
        printf("FAIL: model array not 16-byte aligned\n");
        return 1;
    }
    sha256_hex(MODEL_ARRAY, MODEL_LEN, hex);
    if (strcmp(hex, MODEL_EXPECTED_SHA256) != 0) {
        printf("FAIL: sha256 %s, header says %s\n", hex, MODEL_EXPECTED_SHA256);
        return 1;
    }
    if (argc > 1) { /* host only: byte-compare with the .tflite file */
        FILE *f = fopen(argv[1], "rb");
        size_t i = 0;
        int c;
        if (!f) { printf("FAIL: cannot open %s\n", argv[1]); return 1; }
        while ((c = fgetc(f)) != EOF) {
            if (i >= MODEL_LEN || (unsigned char)c != MODEL_ARRAY[i]) { printf("FAIL: differs at byte %zu\n", i); return 1; }
            i++;
        }
        fclose(f);
        if (i != MODEL_LEN) { printf("FAIL: file has %zu bytes, array %zu\n", i, (size_t)MODEL_LEN); return 1; }
    }
    printf("OK: %zu bytes, sha256 %s%s\n", (size_t)MODEL_LEN, hex, argc > 1 ? ", identical to the .tflite" : "");
    return 0;
}
