/* A stack of bits coded with rANS (Duda 2013; the 64-bit state and 32-bit
 * words of Giesen's rans64 layout): push encodes a symbol onto the stack, pop
 * decodes the one on top. Bits-back coding needs both directions on one stack
 * (lib/codec/bitsback.c), so the stack is an explicit object here rather than
 * an encoder and a decoder.
 *
 * A symbol is given by its interval [start, start + freq) of a frequency
 * table that sums to 2^prec (1 <= prec <= RANS_MAX_PREC, freq >= 1).
 *
 * State x always lies in [RANS_L, 2^63). Words leave the state when a push
 * would overflow it and come back when a pop leaves it below RANS_L; they are
 * kept bottom first, so the file stores them in that order and the decoder
 * resumes from the top.
 *
 * The encoder starts from a state and an unbounded pile of "virtual" words
 * below its bottom, all derived from a seed: the bits a bits-back coder pops
 * before it has pushed anything come from there. They are never stored: the
 * decoder, which pushes them back at the end, recreates them from the same
 * seed and checks that it ends on exactly that state and those words
 * (rans_is_initial), a check of the whole decode. */
#ifndef AGAVE_CODEC_RANS_H
#define AGAVE_CODEC_RANS_H

#include <stddef.h>
#include <stdint.h>

#define RANS_L (1ull << 31)
#define RANS_MAX_PREC 31

typedef enum rans_error {
    RANS_OK = 0,
    RANS_ERR_NOMEM = 1,    /* the word array could not grow */
    RANS_ERR_EMPTY = 2,    /* a decoder popped below its bottom: the stream is short */
    RANS_ERR_LIMIT = 3     /* more words than the stack's limit */
} rans_error;

typedef struct rans_stack {
    uint64_t state;
    uint32_t *words;          /* bottom first */
    size_t len, cap;
    size_t max_words;         /* pushing beyond this sets RANS_ERR_LIMIT */
    uint64_t seed;            /* of the initial state and the virtual words */
    uint64_t virtual_used;    /* virtual words popped so far (encoder) */
    int allow_virtual;        /* 1: pops below the bottom draw virtual words */
    rans_error error;         /* the first error; the stack stays usable but wrong */
} rans_stack;

/* The encoder's start: the seed's initial state, no words, virtual words allowed. */
void rans_init(rans_stack *r, uint64_t seed, size_t max_words);
/* The decoder's start: a stored state and words (copied); pops below them are
 * errors. Returns 0 if the state is outside [RANS_L, 2^63) or memory is short. */
int rans_load(rans_stack *r, uint64_t state, const uint32_t *words, size_t n, uint64_t seed,
              size_t max_words);
void rans_free(rans_stack *r);

/* Encodes [start, start + freq) of a 2^prec table onto the stack. */
void rans_push(rans_stack *r, uint32_t start, uint32_t freq, int prec);
/* The top symbol's slot in [0, 2^prec): the caller finds the symbol whose
 * interval holds it, then removes it with rans_pop. */
static inline uint32_t rans_peek(const rans_stack *r, int prec)
{
    return (uint32_t)(r->state & ((1ull << prec) - 1));
}
/* Removes the top symbol, whose interval [start, start + freq) must hold
 * rans_peek's slot. */
void rans_pop(rans_stack *r, uint32_t start, uint32_t freq, int prec);

/* The state a stack seeded with seed starts from, and its virtual word k
 * (k = 0 is the first one a pop draws). */
uint64_t rans_initial_state(uint64_t seed);
uint32_t rans_virtual_word(uint64_t seed, uint64_t k);

/* 1 if the stack is back where rans_init(seed) started, every virtual word
 * popped since pushed back: the end of a correct decode. */
int rans_is_initial(const rans_stack *r);

#endif
