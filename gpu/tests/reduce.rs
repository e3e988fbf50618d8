// Verifies (every test in this file): R-NUM-5, R-NUM-2
//! The canonical reduction on the emulated device gives the reference's bits.

mod common;
use protokd_gpu::reduce;
use protokd_reference::reduce::sum;

#[test]
fn row_sums_match_the_reference() {
    let dev = common::device();
    for &n in &[0usize, 1, 17, 4096, 4097, 3 * 4096 + 77, 9 * 4096 + 5] {
        let r = 3;
        let x: Vec<f32> = (0..r * n)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.37)
            .collect();
        let b = dev.upload(&x).unwrap();
        let out = dev
            .download(&reduce::sum_rows(&dev, &b, r, n).unwrap())
            .unwrap();
        for j in 0..r {
            let want = sum(&x[j * n..(j + 1) * n]);
            assert_eq!(out[j].to_bits(), want.to_bits(), "n {n}, row {j}");
        }
    }
}
