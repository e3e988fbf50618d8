// Elementwise layers (reference layers::relu) and Tensor::select_channels: one thread per
// output element, no arithmetic besides the one addition of elementwise_add.

// y = pk_relu(x): x if x > 0 or x is NaN (bits passed on unchanged), else +0.0 (so -0.0 and
// -inf give +0.0); on the bits (prelude.cuh).
KERNEL(elementwise_relu_forward, elementwise_relu_forward) {
    long long t = pk_global_index();
    if (t >= p.n) return;
    p.y[t] = pk_relu(p.x[t]);
}

// dx = +0.0 if y <= 0, else dy (y the forward's output; a NaN y passes dy through). dy's bits
// are selected as an integer, so a NaN dy keeps its payload (see elementwise_relu_forward).
KERNEL(elementwise_relu_backward, elementwise_relu_backward) {
    long long t = pk_global_index();
    if (t >= p.n) return;
    p.dx[t] = __uint_as_float(p.y[t] <= 0.0f ? 0u : __float_as_uint(p.dy[t]));
}

// y = a + b (one IEEE addition).
KERNEL(elementwise_add, elementwise_add) {
    long long t = pk_global_index();
    if (t >= p.n) return;
    p.y[t] = p.a[t] + p.b[t];
}

// Channels `channels[k]`, k < K, of [N, C, V] data into [N, K, V]: y[(n K + k) V + p] =
// x[(n C + channels[k]) V + p].
KERNEL(elementwise_select_channels, elementwise_select_channels) {
    long long t = pk_global_index();
    if (t >= p.n * p.k * p.v) return;
    long long voxel = t % p.v;
    long long sel = (t / p.v) % p.k;
    long long sample = t / (p.v * p.k);
    p.y[t] = p.x[(sample * p.c + (long long)p.channels[sel]) * p.v + voxel];
}

// Counting NaNs and infinities (the engine's finiteness check, done on the device so that a
// state or a batch need not be downloaded to be checked). Step 1: thread t < T counts the
// non-finite values among x[t], x[t + T], x[t + 2T], ... (exponent bits all ones).
KERNEL(elementwise_count_nonfinite, elementwise_count_nonfinite) {
    long long t = pk_global_index();
    if (t >= p.threads) return;
    unsigned int c = 0;
    for (long long i = t; i < p.n; i += p.threads) {
        c += (__float_as_uint(p.x[i]) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
    }
    p.counts[t] = c;
}

// Step 2: thread s < S adds counts[s], counts[s + S], ... (of T; exact integer sums).
KERNEL(elementwise_sum_counts, elementwise_sum_counts) {
    long long s = pk_global_index();
    if (s >= p.out) return;
    unsigned int c = 0;
    for (long long i = s; i < p.total; i += p.out) {
        c += p.counts[i];
    }
    p.sums[s] = c;
}
