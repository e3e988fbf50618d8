// The Emulated device's launch loop: runs blocks [block_begin, block_end) of a grid, each
// block's threads one after another, by calling the kernel (compiled for the host from the same
// source as for NVRTC) with blockIdx/threadIdx set. Kernels do not cooperate between threads
// (prelude.cuh), so this sequential order computes what any GPU schedule computes.
// Compiled like the kernels, after pk_shared.cuh and prelude.cuh (build.rs), which give it emu.h.
// `kernel` is a kernel's host entry point pk_emu_<name> (prelude.cuh), `args` the address of the
// kernel's argument struct.

thread_local pk_dim3 blockIdx, threadIdx, blockDim, gridDim;

extern "C" void pk_emu_run(void (*kernel)(const void *), const void *args, unsigned int grid_x,
                           unsigned int grid_y, unsigned int grid_z, unsigned int block_x,
                           unsigned int block_y, unsigned int block_z,
                           unsigned long long block_begin, unsigned long long block_end) {
    gridDim = {grid_x, grid_y, grid_z};
    blockDim = {block_x, block_y, block_z};
    for (unsigned long long b = block_begin; b < block_end; b++) {
        blockIdx.x = (unsigned int)(b % grid_x);
        blockIdx.y = (unsigned int)((b / grid_x) % grid_y);
        blockIdx.z = (unsigned int)(b / ((unsigned long long)grid_x * grid_y));
        for (unsigned int tz = 0; tz < block_z; tz++) {
            for (unsigned int ty = 0; ty < block_y; ty++) {
                for (unsigned int tx = 0; tx < block_x; tx++) {
                    threadIdx = {tx, ty, tz};
                    kernel(args);
                }
            }
        }
    }
}
