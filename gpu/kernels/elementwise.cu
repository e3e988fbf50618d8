// Elementwise layers (reference layers::relu) and Tensor::select_channels: one thread per
// output element, no arithmetic besides the one addition of elementwise_add.

// y = pk_relu(x): x if x > 0 or x is NaN (bits passed on unchanged), else +0.0 (so -0.0 and
// -inf give +0.0); on the bits (prelude.cuh).
//
// args: 0 x, 1 y, 2 n
KERNEL(elementwise_relu_forward) {
    const float *x = ARG_PTR(const float, 0);
    float *y = ARG_PTR(float, 1);
    long long n = ARG_I64(2);
    long long t = pk_global_index();
    if (t >= n) return;
    y[t] = pk_relu(x[t]);
}

// dx = +0.0 if y <= 0, else dy (y the forward's output; a NaN y passes dy through). dy's bits
// are selected as an integer, so a NaN dy keeps its payload (see elementwise_relu_forward).
//
// args: 0 dy, 1 y, 2 dx, 3 n
KERNEL(elementwise_relu_backward) {
    const float *dy = ARG_PTR(const float, 0);
    const float *y = ARG_PTR(const float, 1);
    float *dx = ARG_PTR(float, 2);
    long long n = ARG_I64(3);
    long long t = pk_global_index();
    if (t >= n) return;
    dx[t] = __uint_as_float(y[t] <= 0.0f ? 0u : __float_as_uint(dy[t]));
}

// y = a + b (one IEEE addition).
//
// args: 0 a, 1 b, 2 y, 3 n
KERNEL(elementwise_add) {
    const float *a = ARG_PTR(const float, 0);
    const float *b = ARG_PTR(const float, 1);
    float *y = ARG_PTR(float, 2);
    long long n = ARG_I64(3);
    long long t = pk_global_index();
    if (t >= n) return;
    y[t] = a[t] + b[t];
}

// Channels `channels[k]`, k < K, of [N, C, V] data into [N, K, V]: y[(n K + k) V + p] =
// x[(n C + channels[k]) V + p].
//
// args: 0 x, 1 channels (unsigned int[K]), 2 y, 3 N, 4 C, 5 K, 6 V
KERNEL(elementwise_select_channels) {
    const float *x = ARG_PTR(const float, 0);
    const unsigned int *channels = ARG_PTR(const unsigned int, 1);
    float *y = ARG_PTR(float, 2);
    long long n = ARG_I64(3);
    long long c = ARG_I64(4);
    long long k = ARG_I64(5);
    long long v = ARG_I64(6);
    long long t = pk_global_index();
    if (t >= n * k * v) return;
    long long voxel = t % v;
    long long sel = (t / v) % k;
    long long sample = t / (v * k);
    y[t] = x[(sample * c + (long long)channels[sel]) * v + voxel];
}

// Counting NaNs and infinities (the engine's finiteness check, done on the device so that a
// state or a batch need not be downloaded to be checked). Step 1: thread t < T counts the
// non-finite values among x[t], x[t + T], x[t + 2T], ... (exponent bits all ones).
//
// args: 0 x, 1 counts (unsigned int[T]), 2 n, 3 T
KERNEL(elementwise_count_nonfinite) {
    const float *x = ARG_PTR(const float, 0);
    unsigned int *counts = ARG_PTR(unsigned int, 1);
    long long n = ARG_I64(2);
    long long threads = ARG_I64(3);
    long long t = pk_global_index();
    if (t >= threads) return;
    unsigned int c = 0;
    for (long long i = t; i < n; i += threads) {
        c += (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
    }
    counts[t] = c;
}

// Step 2: thread s < S adds counts[s], counts[s + S], ... (of T; exact integer sums).
//
// args: 0 counts (unsigned int[T]), 1 sums (unsigned int[S]), 2 T, 3 S
KERNEL(elementwise_sum_counts) {
    const unsigned int *counts = ARG_PTR(const unsigned int, 0);
    unsigned int *sums = ARG_PTR(unsigned int, 1);
    long long total = ARG_I64(2);
    long long out = ARG_I64(3);
    long long s = pk_global_index();
    if (s >= out) return;
    unsigned int c = 0;
    for (long long i = s; i < total; i += out) {
        c += counts[i];
    }
    sums[s] = c;
}
