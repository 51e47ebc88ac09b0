/* The learning-rate schedule: a linear warm-up and an exponential decay per
 * step (openai/pixel-cnn's lr_decay). */
#include <math.h>

#include "train.h"

double lr_schedule(double lr, int warmup, double decay, int64_t k)
{
    double ramp = warmup > 0 && k < warmup ? (double)k / warmup : 1.0;
    return lr * ramp * pow(decay, (double)(k - 1));
}
