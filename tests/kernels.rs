//! The fused kernels against candle's own elementary ops: the same values forward and the same
//! gradients backward, on shapes that are not multiples of any vector width.

use candle_core::{Device, Tensor, Var, D};
use epitome::kernels::{self, AttentionDropout};
use epitome::rng::SplitMix64;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// Values and gradients of `fused` and `reference` (both functions of `inputs`) agree.
fn check(
    name: &str,
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
    tol: f32,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let a = fused(&ts);
    let b = reference(&ts);
    assert_eq!(a.dims(), b.dims(), "{name}: shapes");
    let d = max_diff(&a, &b);
    assert!(d < tol, "{name}: forward differs by {d}");
    // A loss that weighs every output differently, so that no gradient is trivially uniform.
    let weights = random(a.dims(), 99);
    let ga = (&a * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gb = (&b * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (i, t) in ts.iter().enumerate() {
        let (x, y) = (ga.get(t), gb.get(t));
        match (x, y) {
            (Some(x), Some(y)) => {
                let d = max_diff(x, y);
                assert!(d < tol, "{name}: gradient of input {i} differs by {d}");
                let norm = x
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{name}: gradient of input {i} is zero");
            }
            _ => panic!(
                "{name}: input {i} got no gradient ({}, {})",
                x.is_some(),
                y.is_some()
            ),
        }
    }
}

#[test]
fn linear_matches_matmul_plus_bias() {
    let inputs = [
        random(&[3, 7, 37], 1),
        random(&[19, 37], 2),
        random(&[19], 3),
    ];
    check(
        "linear",
        &inputs,
        |t| kernels::linear(&t[0], &t[1], &t[2]).unwrap(),
        |t| {
            t[0].broadcast_matmul(&t[1].t().unwrap())
                .unwrap()
                .broadcast_add(&t[2])
                .unwrap()
        },
        1e-5,
    );
}

#[test]
fn inference_linear_against_the_transposed_weight_matches_the_trainable_one() {
    let x = random(&[2, 13, 384], 4);
    let w = random(&[40, 384], 5);
    let b = random(&[40], 6);
    let wt: Vec<f32> = w
        .t()
        .unwrap()
        .contiguous()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let a = kernels::linear_transposed(&x, &wt, &b).unwrap();
    let r = kernels::linear(&x, &w, &b).unwrap();
    assert_eq!(a.dims(), r.dims());
    assert!(max_diff(&a, &r) < 1e-4);
}

#[test]
fn inference_linear_against_the_packed_weight_matches_the_trainable_one() {
    // Widths that are not multiples of a panel are refused (gemm serves them).
    assert!(kernels::PackedWeight::pack(&[0.0; 40 * 3], 40, 3).is_none());
    // 803 inputs take three passes over k (384 at a time), the last one partial and not a
    // multiple of 8 (the tiles' transposes take eight k at a time); the row counts leave every
    // tile height (1 to 6 for AVX2, 1 to 8 for AVX-512) at the end of a 96-row block, 200
    // rows split between threads by rows, 1 to 13 by panels (single panels); on one thread,
    // nothing is split, and five panels are a triple and a pair for AVX-512.
    let w = random(&[80, 803], 7);
    let b = random(&[80], 8);
    let flat: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    let variants: Vec<_> = kernels::Isa::available()
        .into_iter()
        .filter_map(|isa| kernels::PackedWeight::pack_for(&flat, 80, 803, isa))
        .collect();
    // The default packing takes the best variant.
    assert_eq!(
        kernels::PackedWeight::pack(&flat, 80, 803).is_some(),
        !variants.is_empty()
    );
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for packed in &variants {
        assert_eq!((packed.out_dim(), packed.in_dim()), (80, 803));
        assert_eq!(packed.unpack(), flat);
        for rows in (1..=13).chain([23, 25, 47, 49, 53, 95, 97, 100, 200]) {
            let x = random(&[rows, 803], 9 + rows as u64);
            let r = kernels::linear(&x, &w, &b).unwrap();
            let outputs = [
                kernels::linear_packed(&x, packed, &b).unwrap(),
                one_thread.install(|| kernels::linear_packed(&x, packed, &b).unwrap()),
            ];
            for a in &outputs {
                assert_eq!(a.dims(), r.dims());
                let d = max_diff(a, &r);
                assert!(d < 1e-4, "{rows} rows: the packed product differs by {d}");
            }
            // Every variant adds each output's products in the same order: identical results.
            let first = kernels::linear_packed(&x, &variants[0], &b).unwrap();
            assert_eq!(
                max_diff(&outputs[0], &first),
                0.0,
                "{rows} rows: variants differ"
            );
        }
        let x = random(&[100, 803], 31);
        let gelu = kernels::linear_packed_gelu(&x, packed, &b).unwrap();
        let apart = kernels::gelu_erf(&kernels::linear_packed(&x, packed, &b).unwrap()).unwrap();
        assert_eq!(max_diff(&gelu, &apart), 0.0, "the fused GELU differs");
        let wrong = random(&[2, 799], 30);
        assert!(kernels::linear_packed(&wrong, packed, &b).is_err());
    }
}

#[test]
fn layer_norm_matches_its_composite() {
    let inputs = [
        (random(&[4, 5, 45], 7) * 3.0).unwrap(),
        random(&[45], 8),
        random(&[45], 9),
    ];
    check(
        "layer norm",
        &inputs,
        |t| kernels::layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
        |t| {
            let mean = t[0].mean_keepdim(D::Minus1).unwrap();
            let centered = t[0].broadcast_sub(&mean).unwrap();
            let var = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let std = (var + 1e-12).unwrap().sqrt().unwrap();
            centered
                .broadcast_div(&std)
                .unwrap()
                .broadcast_mul(&t[1])
                .unwrap()
                .broadcast_add(&t[2])
                .unwrap()
        },
        1e-4,
    );
}

#[test]
fn layer_norm_of_a_sum_is_the_two_ops_one_after_the_other() {
    let (x, r) = (random(&[3, 70, 45], 11), random(&[3, 70, 45], 12));
    let (w, b) = (random(&[45], 13), random(&[45], 14));
    let fused = kernels::add_layer_norm(&x, &r, &w, &b, 1e-12).unwrap();
    let apart = kernels::layer_norm(&(&x + &r).unwrap(), &w, &b, 1e-12).unwrap();
    assert_eq!(fused.dims(), apart.dims());
    assert_eq!(max_diff(&fused, &apart), 0.0);
    assert!(kernels::add_layer_norm(&x, &w, &w, &b, 1e-12).is_err());
}

#[test]
fn gelu_matches_candles_erf_gelu() {
    let inputs = [(random(&[3, 1001], 10) * 5.0).unwrap()];
    check(
        "gelu",
        &inputs,
        |t| kernels::gelu_erf(&t[0]).unwrap(),
        |t| t[0].gelu_erf().unwrap(),
        1e-5,
    );
}

/// Multi-head attention from elementary ops, masking keys past each row's length.
fn reference_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    lengths: &[usize],
) -> Tensor {
    let (b, tq, h) = q.dims3().unwrap();
    let tk = k.dim(1).unwrap();
    let d = h / heads;
    let split = |x: &Tensor, t: usize| {
        x.reshape((b, t, heads, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (q, k, v) = (split(q, tq), split(k, tk), split(v, tk));
    let mask: Vec<f32> = lengths
        .iter()
        .flat_map(|&l| (0..tk).map(move |j| if j < l { 0.0 } else { -1e9 }))
        .collect();
    let mask = Tensor::from_vec(mask, (b, 1, 1, tk), &Device::Cpu).unwrap();
    let scores = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() / (d as f64).sqrt())
        .unwrap()
        .broadcast_add(&mask)
        .unwrap();
    let max = scores.max_keepdim(D::Minus1).unwrap().detach();
    let e = scores.broadcast_sub(&max).unwrap().exp().unwrap();
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
    p.matmul(&v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((b, tq, h))
        .unwrap()
}

#[test]
fn attention_matches_its_composite_with_masked_keys() {
    // Self-attention shapes (4 heads) and cross-attention shapes (1 head, other key count).
    for (heads, tq, tk, lengths) in [(4, 9, 9, vec![9, 5, 1]), (1, 6, 11, vec![11, 3, 7])] {
        let h = 4 * 6;
        let inputs = [
            random(&[3, tq, h], 11),
            random(&[3, tk, h], 12),
            random(&[3, tk, h], 13),
        ];
        let l = lengths.clone();
        check(
            &format!("attention, {heads} heads"),
            &inputs,
            |t| kernels::attention(&t[0], &t[1], &t[2], heads, &lengths, None).unwrap(),
            |t| reference_attention(&t[0], &t[1], &t[2], heads, &l),
            1e-5,
        );
    }
}

#[test]
fn attention_dropout_is_reproducible_and_its_gradient_is_the_derivative() {
    let (q, k, v) = (
        random(&[2, 5, 8], 14),
        random(&[2, 6, 8], 15),
        random(&[2, 6, 8], 16),
    );
    let lengths = [6, 4];
    let drop = |seed| Some(AttentionDropout { p: 0.3, seed });
    let run = |q: &Tensor, seed| kernels::attention(q, &k, &v, 2, &lengths, drop(seed)).unwrap();
    let a = run(&q, 7);
    assert_eq!(
        max_diff(&a, &run(&q, 7)),
        0.0,
        "the same seed drops the same probabilities"
    );
    assert!(max_diff(&a, &run(&q, 8)) > 0.0, "another seed drops others");
    let plain = kernels::attention(&q, &k, &v, 2, &lengths, None).unwrap();
    assert!(max_diff(&a, &plain) > 0.0, "dropout changed nothing");

    // The mask is a function of the position, so the output is a smooth function of q and
    // central differences check the analytic gradient.
    let weights = random(a.dims(), 17);
    let loss = |q: &Tensor| {
        (run(q, 7) * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let qv = Var::from_tensor(&q).unwrap();
    let grads = (run(qv.as_tensor(), 7) * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let analytic: Vec<f32> = grads
        .get(qv.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f32> = q.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-2f32;
    for i in [0, 3, 17, 41, 79] {
        let mut plus = base.clone();
        plus[i] += eps;
        let mut minus = base.clone();
        minus[i] -= eps;
        let shape = q.shape().clone();
        let f = |v: Vec<f32>| loss(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap());
        let numeric = (f(plus) - f(minus)) / (2.0 * eps as f64);
        assert!(
            (numeric - analytic[i] as f64).abs() < 2e-3,
            "d loss / d q[{i}]: numeric {numeric}, analytic {}",
            analytic[i]
        );
    }
}

#[test]
fn dropout_keeps_the_expected_share_and_passes_gradients_through_the_same_mask() {
    let x =
        (Tensor::ones((64, 1000), candle_core::DType::F32, &Device::Cpu).unwrap() * 2.0).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let y = kernels::dropout(xv.as_tensor(), 0.25, 3).unwrap();
    let values: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    assert!(values
        .iter()
        .all(|&v| v == 0.0 || (v - 2.0 / 0.75).abs() < 1e-6));
    let same: Vec<f32> = kernels::dropout(&x, 0.25, 3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(values, same, "the same seed gives the same mask");
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g: Vec<f32> = grads
        .get(xv.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (g, v) in g.iter().zip(&values) {
        assert_eq!(*g == 0.0, *v == 0.0, "the gradient uses the forward mask");
    }
}

#[test]
fn int8_linear_is_exact_on_its_grids_and_close_to_f32_elsewhere() {
    // Every variant this CPU runs (none without AVX2: the int8 path is never taken).
    for isa in kernels::Isa::available() {
        int8_variant_is_exact_on_its_grids_and_close_to_f32(isa);
    }
}

fn int8_variant_is_exact_on_its_grids_and_close_to_f32(isa: kernels::Isa) {
    let wmax = kernels::QuantizedWeight::quantize_for(&[1.0], 1, 1, isa)
        .unwrap()
        .weight_max() as usize;
    // Weights on the variant's grid (each channel's largest magnitude 1, so its step is
    // 1/wmax) and inputs on the 8-bit grid (each row spans exactly [0, 1], step 1/255)
    // quantize without error: the integer product must then reproduce f32 up to rounding.
    // The shapes are not multiples of 4 (k groups) or 16 (panels); 27 rows leave a short tile
    // of every variant, and 37 columns a partial panel after a whole pair.
    let (rows, inp, out) = (27, 37, 37);
    let mut w: Vec<f32> = (0..out * inp)
        .map(|i| ((i * 7 % (2 * wmax + 1)) as f32 - wmax as f32) / wmax as f32)
        .collect();
    let mut x: Vec<f32> = (0..rows * inp)
        .map(|i| (i * 13 % 256) as f32 / 255.0)
        .collect();
    for c in 0..out {
        w[c * inp] = 1.0;
    }
    for r in 0..rows {
        x[r * inp] = 0.0;
        x[r * inp + 1] = 1.0;
    }
    let wt = Tensor::from_vec(w.clone(), (out, inp), &Device::Cpu).unwrap();
    let xt = Tensor::from_vec(x, (rows, inp), &Device::Cpu).unwrap();
    let b = random(&[out], 20);
    let q = kernels::QuantizedWeight::quantize_for(&w, out, inp, isa).unwrap();
    let exact = kernels::linear(&xt, &wt, &b).unwrap();
    let int8 = kernels::linear_int8(&xt, &q, &b).unwrap();
    let d = max_diff(&exact, &int8);
    assert!(d < 1e-4, "{isa:?}: values on the grids differ by {d}");
    // The GELU fused into the tiles: the same values as the product and then the GELU, on
    // every tile, short or partial.
    let gelu = kernels::linear_int8_gelu(&xt, &q, &b).unwrap();
    let apart = kernels::gelu_erf(&int8).unwrap();
    assert_eq!(
        max_diff(&gelu, &apart),
        0.0,
        "{isa:?}: the fused GELU differs"
    );

    // Real-valued inputs and weights: within what 7- or 8-bit weights and 8-bit inputs allow.
    let (x, w, b) = (
        random(&[64, 384], 21),
        random(&[100, 384], 22),
        random(&[100], 23),
    );
    let values: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    let q = kernels::QuantizedWeight::quantize_for(&values, 100, 384, isa).unwrap();
    let exact = kernels::linear(&x, &w, &b).unwrap();
    let int8 = kernels::linear_int8(&x, &q, &b).unwrap();
    let scale = max_abs(&exact);
    let err = max_diff(&exact, &int8);
    assert!(
        err < 0.02 * scale,
        "{isa:?}: int8 error {err} against outputs up to {scale}"
    );
}
