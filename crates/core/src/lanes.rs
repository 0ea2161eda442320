//! The `f32` activation and softmax loops at sixteen lanes, through `pulp`, on CPUs with
//! AVX-512.
//!
//! LLVM's tuning for recent Intel cores vectorizes plain loops at 256 bits even where 512-bit
//! registers exist, and stable Rust has no way to ask otherwise for one function (the
//! `-prefer-256-bit` target feature does it for a whole build, with a warning that it is
//! unstable). These kernels compute the same operations as the scalar element functions
//! ([`exp_f32`](crate::element::exp_f32), [`tanh_f32`](crate::element::tanh_f32),
//! `sigmoid_k`, [`Activation::grad`]) lane by lane, in the same order with the same roundings,
//! so they give the same bits (tested in `lanes/tests.rs`); tails shorter than a vector run
//! the ops' own scalar loops (`Activation::*_scalar`, `softmax::*_scalar`). Where the CPU
//! lacks AVX-512 (or the target is not x86-64), [`f32_lanes`] is `None` and the callers keep
//! their scalar loops.
//!
//! They serve the activations of `addmm_act(s)` (an RNN's and an LSTM's gates), `add_act`
//! and `addcmul_act` (a GRU's), `mul_act` forward and backward, and the activation gradients
//! of all of these; and the softmax rows of `softmax`, `log_softmax` and cross-entropy
//! (forward, and the gradient, which recomputes them). What they bought is measured in
//! docs/PERFORMANCE.md (the twenty-eighth session).

use crate::element::Lanes;
use crate::ops::addmm_act::Activation;
use std::sync::OnceLock;

/// The kernels, on a CPU with AVX-512 (pulp's `V4` level), detected once.
#[inline]
pub(crate) fn f32_lanes() -> Option<&'static Lanes<f32>> {
    static LANES: OnceLock<Option<Lanes<f32>>> = OnceLock::new();
    LANES.get_or_init(detect).as_ref()
}

fn detect() -> Option<Lanes<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        x86::v4().map(|_| Lanes {
            added: x86::added,
            apply: x86::apply,
            act: x86::act,
            mul_act: x86::mul_act,
            grads: x86::grads,
            scaled_grads: x86::scaled_grads,
            exp_shifted: x86::exp_shifted,
            softmax_scaled: x86::softmax_scaled,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Activation;
    use crate::element::ROUNDER;
    use crate::ops::softmax;
    use pulp::x86::V4;
    use pulp::{Simd, WithSimd};
    use std::marker::PhantomData;
    use std::sync::OnceLock;

    /// The AVX-512 level, if the CPU has it: detected on the first call only (detecting it
    /// reads some fifteen feature flags, as long as a short kernel takes).
    pub(super) fn v4() -> Option<V4> {
        static LEVEL: OnceLock<Option<V4>> = OnceLock::new();
        *LEVEL.get_or_init(V4::try_new)
    }

    /// One activation as a type, so that each kernel is compiled once per activation with no
    /// branch on it inside the loop.
    trait Act {
        /// `act(x)`, lane by lane, with the bits of the scalar element function.
        fn lanes<S: Simd>(s: S, x: S::f32s) -> S::f32s;
        /// `g ⊙ act'` written with the output `y` (as [`Activation::grad`]), lane by lane.
        fn grad<S: Simd>(s: S, g: S::f32s, y: S::f32s) -> S::f32s;
        /// The enum value, for the scalar loops the tails run.
        const ACT: Activation;
    }

    struct Tanh;
    struct Sigmoid;
    struct Relu;

    impl Act for Tanh {
        const ACT: Activation = Activation::Tanh;
        #[inline(always)]
        fn lanes<S: Simd>(s: S, x: S::f32s) -> S::f32s {
            tanh(s, x)
        }
        #[inline(always)]
        fn grad<S: Simd>(s: S, g: S::f32s, y: S::f32s) -> S::f32s {
            s.mul_f32s(g, s.sub_f32s(s.splat_f32s(1.0), s.mul_f32s(y, y)))
        }
    }

    impl Act for Sigmoid {
        const ACT: Activation = Activation::Sigmoid;
        #[inline(always)]
        fn lanes<S: Simd>(s: S, x: S::f32s) -> S::f32s {
            sigmoid(s, x)
        }
        #[inline(always)]
        fn grad<S: Simd>(s: S, g: S::f32s, y: S::f32s) -> S::f32s {
            s.mul_f32s(s.mul_f32s(g, y), s.sub_f32s(s.splat_f32s(1.0), y))
        }
    }

    impl Act for Relu {
        const ACT: Activation = Activation::Relu;
        #[inline(always)]
        fn lanes<S: Simd>(s: S, x: S::f32s) -> S::f32s {
            let zero = s.splat_f32s(0.0);
            s.select_f32s(s.greater_than_f32s(x, zero), x, zero)
        }
        #[inline(always)]
        fn grad<S: Simd>(s: S, g: S::f32s, y: S::f32s) -> S::f32s {
            let zero = s.splat_f32s(0.0);
            s.select_f32s(s.greater_than_f32s(y, zero), g, zero)
        }
    }

    /// A loop over slices, at sixteen lanes or, for the whole length, as the op's scalar loop
    /// (the same bits; the sixteen-lane version runs that loop on its tail).
    trait Kernel: WithSimd<Output = ()> {
        fn scalar(self);
    }

    /// Runs `op` at sixteen lanes; `V4` was detected before these kernels were handed out,
    /// but a kernel called without it still computes its loop, in scalar code.
    fn run<Op: Kernel>(op: Op) {
        match v4() {
            Some(simd) => Simd::vectorize(simd, op),
            None => op.scalar(),
        }
    }

    /// `$run` with the type `A` standing for `$act`.
    macro_rules! per_act {
        ($act:expr, $run:ident ( $($arg:expr),* )) => {
            match $act {
                Activation::Tanh => $run::<Tanh>($($arg),*),
                Activation::Sigmoid => $run::<Sigmoid>($($arg),*),
                Activation::Relu => $run::<Relu>($($arg),*),
            }
        };
    }

    fn run_added<A: Act>(y: &mut [f32], c: Option<&[f32]>) {
        run(Added::<A> {
            y,
            c,
            act: PhantomData,
        })
    }

    fn run_write<A: Act>(out: &mut [f32], x: &[f32], a: &[f32], b: &[f32], kind: Kind) {
        run(Write::<A> {
            out,
            x,
            a,
            b,
            kind,
            act: PhantomData,
        })
    }

    /// `y = act(y + c)`.
    pub(super) fn added(act: Activation, y: &mut [f32], c: &[f32]) {
        let n = y.len().min(c.len());
        per_act!(act, run_added(&mut y[..n], Some(&c[..n])))
    }
    /// `y = act(y)`.
    pub(super) fn apply(act: Activation, y: &mut [f32]) {
        per_act!(act, run_added(y, None))
    }
    /// `out = act(x)`.
    pub(super) fn act(act: Activation, out: &mut [f32], x: &[f32]) {
        let n = out.len().min(x.len());
        per_act!(act, run_write(&mut out[..n], &x[..n], &[], &[], Kind::Act))
    }
    /// `out = a ⊙ act(x)`.
    pub(super) fn mul_act(act: Activation, out: &mut [f32], x: &[f32], a: &[f32]) {
        let n = out.len().min(x.len()).min(a.len());
        per_act!(
            act,
            run_write(&mut out[..n], &x[..n], &a[..n], &[], Kind::MulAct)
        )
    }
    /// `out = g ⊙ act'(y)`, written with the output `y`.
    pub(super) fn grads(act: Activation, out: &mut [f32], g: &[f32], y: &[f32]) {
        let n = out.len().min(y.len()).min(g.len());
        per_act!(
            act,
            run_write(&mut out[..n], &y[..n], &g[..n], &[], Kind::Grad)
        )
    }
    /// `out = (g ⊙ a) ⊙ act'(y)`.
    pub(super) fn scaled_grads(act: Activation, out: &mut [f32], g: &[f32], a: &[f32], y: &[f32]) {
        let n = out.len().min(y.len()).min(g.len()).min(a.len());
        let (x, a, b) = (&y[..n], &g[..n], &a[..n]);
        per_act!(act, run_write(&mut out[..n], x, a, b, Kind::ScaledGrad))
    }

    /// `out = exp(x - m)`.
    pub(super) fn exp_shifted(out: &mut [f32], x: &[f32], m: f32) {
        let n = out.len().min(x.len());
        run(Exp {
            out: &mut out[..n],
            x: &x[..n],
            m,
            scale: None,
        })
    }
    /// `out = w · (exp(x - m) / z)`.
    pub(super) fn softmax_scaled(out: &mut [f32], x: &[f32], m: f32, z: f32, w: f32) {
        let n = out.len().min(x.len());
        run(Exp {
            out: &mut out[..n],
            x: &x[..n],
            m,
            scale: Some((z, w)),
        })
    }

    /// `out = exp(x - m)`, or with `scale = (z, w)` `out = w · (exp(x - m) / z)`.
    struct Exp<'a> {
        out: &'a mut [f32],
        x: &'a [f32],
        m: f32,
        scale: Option<(f32, f32)>,
    }

    impl Kernel for Exp<'_> {
        fn scalar(self) {
            let Exp { out, x, m, scale } = self;
            match scale {
                None => softmax::exp_shifted_scalar(out, x, m),
                Some((z, w)) => softmax::softmax_scaled_scalar(out, x, m, z, w),
            }
        }
    }

    impl WithSimd for Exp<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Exp { out, x, m, scale } = self;
            let (oh, ot) = S::as_mut_simd_f32s(out);
            let (xh, xt) = S::as_simd_f32s(x);
            let mv = s.splat_f32s(m);
            match scale {
                None => {
                    for (o, &x) in oh.iter_mut().zip(xh) {
                        *o = exp(s, s.sub_f32s(x, mv));
                    }
                }
                Some((z, w)) => {
                    let (zv, wv) = (s.splat_f32s(z), s.splat_f32s(w));
                    for (o, &x) in oh.iter_mut().zip(xh) {
                        *o = s.mul_f32s(wv, s.div_f32s(exp(s, s.sub_f32s(x, mv)), zv));
                    }
                }
            }
            Exp {
                out: ot,
                x: xt,
                m,
                scale,
            }
            .scalar();
        }
    }

    /// `y = act(y + c)` (no `c`: `y = act(y)`); `c` as long as `y`.
    struct Added<'a, A> {
        y: &'a mut [f32],
        c: Option<&'a [f32]>,
        act: PhantomData<A>,
    }

    impl<A: Act> Kernel for Added<'_, A> {
        fn scalar(self) {
            match self.c {
                None => A::ACT.apply_scalar(self.y),
                Some(c) => A::ACT.apply_added_scalar(self.y, c),
            }
        }
    }

    impl<A: Act> WithSimd for Added<'_, A> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Added { y, c, act } = self;
            let (head, tail) = S::as_mut_simd_f32s(y);
            match c {
                None => {
                    for v in head.iter_mut() {
                        *v = A::lanes(s, *v);
                    }
                    Added {
                        y: tail,
                        c: None,
                        act,
                    }
                    .scalar();
                }
                Some(c) => {
                    let (ch, ct) = S::as_simd_f32s(c);
                    for (v, &c) in head.iter_mut().zip(ch) {
                        *v = A::lanes(s, s.add_f32s(*v, c));
                    }
                    Added {
                        y: tail,
                        c: Some(ct),
                        act,
                    }
                    .scalar();
                }
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Kind {
        /// `act(x)`.
        Act,
        /// `a ⊙ act(x)`.
        MulAct,
        /// `a ⊙ act'`, `x` the activation's output, `a` the upstream gradient.
        Grad,
        /// `(a ⊙ b) ⊙ act'`, `x` the output, `a ⊙ b` the upstream gradient.
        ScaledGrad,
    }

    /// Writes `kind` of `x` (and `a`, `b`, each as long as `x` where `kind` reads it) into
    /// `out`, as long as `x`.
    struct Write<'a, A> {
        out: &'a mut [f32],
        x: &'a [f32],
        a: &'a [f32],
        b: &'a [f32],
        kind: Kind,
        act: PhantomData<A>,
    }

    impl<A: Act> Kernel for Write<'_, A> {
        fn scalar(self) {
            let Write {
                out, x, a, b, kind, ..
            } = self;
            match kind {
                Kind::Act => A::ACT.write_act_scalar(out, x),
                Kind::MulAct => A::ACT.write_mul_act_scalar(out, x, a),
                Kind::Grad => A::ACT.write_grads_scalar(out, a, x),
                Kind::ScaledGrad => A::ACT.write_scaled_grads_scalar(out, a, b, x),
            }
        }
    }

    impl<'a, A: Act> WithSimd for Write<'a, A> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Write {
                out,
                x,
                a,
                b,
                kind,
                act,
            } = self;
            let (oh, ot) = S::as_mut_simd_f32s(out);
            let (xh, xt) = S::as_simd_f32s(x);
            let done = x.len() - xt.len();
            let split = |v: &'a [f32]| match v {
                [] => (&[][..], v),
                _ => (S::as_simd_f32s(&v[..done]).0, &v[done..]),
            };
            let ((ah, at), (bh, bt)) = (split(a), split(b));
            match kind {
                Kind::Act => {
                    for (o, &v) in oh.iter_mut().zip(xh) {
                        *o = A::lanes(s, v);
                    }
                }
                Kind::MulAct => {
                    for (o, (&v, &a)) in oh.iter_mut().zip(xh.iter().zip(ah)) {
                        *o = s.mul_f32s(a, A::lanes(s, v));
                    }
                }
                Kind::Grad => {
                    for (o, (&y, &g)) in oh.iter_mut().zip(xh.iter().zip(ah)) {
                        *o = A::grad(s, g, y);
                    }
                }
                Kind::ScaledGrad => {
                    for (o, (&y, (&g, &b))) in oh.iter_mut().zip(xh.iter().zip(ah.iter().zip(bh))) {
                        *o = A::grad(s, s.mul_f32s(g, b), y);
                    }
                }
            }
            Write {
                out: ot,
                x: xt,
                a: at,
                b: bt,
                kind,
                act,
            }
            .scalar();
        }
    }

    /// `a·b + c` rounded as the scalar `fmadd` of `element.rs` rounds it: fused where the
    /// build has FMA, else a product and a sum.
    #[inline(always)]
    fn fmadd<S: Simd>(s: S, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
        if cfg!(target_feature = "fma") {
            s.mul_add_f32s(a, b, c)
        } else {
            s.add_f32s(s.mul_f32s(a, b), c)
        }
    }

    /// `reduce_ln2` of `element.rs`: `(t, r)` with `z = n ln2 + r`, `t`'s bits holding `n`.
    #[inline(always)]
    fn reduce_ln2<S: Simd>(s: S, z: S::f32s) -> (S::f32s, S::f32s) {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let rounder = s.splat_f32s(ROUNDER);
        let t = fmadd(s, z, s.splat_f32s(std::f32::consts::LOG2_E), rounder);
        let nn = s.neg_f32s(s.sub_f32s(t, rounder));
        let hi = fmadd(s, nn, s.splat_f32s(LN2_HI), z);
        (t, fmadd(s, nn, s.splat_f32s(LN2_LO), hi))
    }

    /// `pow2` of `element.rs`: `2^n` from the `t` of [`reduce_ln2`].
    #[inline(always)]
    fn pow2<S: Simd>(s: S, t: S::f32s) -> S::f32s {
        let bias = s.splat_u32s(ROUNDER.to_bits() - 127);
        let bits = s.sub_u32s(s.transmute_u32s_f32s(t), bias);
        s.transmute_f32s_u32s(s.wrapping_dyn_shl_u32s(bits, s.splat_u32s(23)))
    }

    /// [`exp_f32`](crate::element::exp_f32), lane by lane.
    #[inline(always)]
    fn exp<S: Simd>(s: S, x: S::f32s) -> S::f32s {
        let z = s.min_f32s(s.max_f32s(x, s.splat_f32s(-87.0)), s.splat_f32s(88.0));
        let (t, r) = reduce_ln2(s, z);
        let mut p = s.splat_f32s(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = fmadd(s, p, r, s.splat_f32s(c));
        }
        let y = s.mul_f32s(p, pow2(s, t));
        let big = s.greater_than_f32s(x, s.splat_f32s(88.722_83));
        let y = s.select_f32s(big, s.splat_f32s(f32::INFINITY), y);
        let y = s.select_f32s(
            s.less_than_f32s(x, s.splat_f32s(-87.336_54)),
            s.splat_f32s(0.0),
            y,
        );
        s.select_f32s(s.equal_f32s(x, x), y, x)
    }

    /// `1 / (1 + e^-x)`, as `f32`'s `sigmoid_k`.
    #[inline(always)]
    fn sigmoid<S: Simd>(s: S, x: S::f32s) -> S::f32s {
        let one = s.splat_f32s(1.0);
        s.div_f32s(one, s.add_f32s(one, exp(s, s.neg_f32s(x))))
    }

    /// [`tanh_f32`](crate::element::tanh_f32), lane by lane.
    #[inline(always)]
    fn tanh<S: Simd>(s: S, x: S::f32s) -> S::f32s {
        let z = s.mul_f32s(
            s.splat_f32s(2.0),
            s.min_f32s(s.abs_f32s(x), s.splat_f32s(9.0)),
        );
        let (t, r) = reduce_ln2(s, z);
        let mut p = s.splat_f32s(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0] {
            p = fmadd(s, p, r, s.splat_f32s(c));
        }
        let scale = pow2(s, t);
        let m = fmadd(
            s,
            scale,
            s.mul_f32s(p, r),
            s.sub_f32s(scale, s.splat_f32s(1.0)),
        );
        let y = s.div_f32s(m, s.add_f32s(m, s.splat_f32s(2.0)));
        // copysign(y, x): `y` is +0 or positive here, so negated where `x`'s sign bit is set
        // (a copysign through pulp's u32 and/or/not gave wrong values in one kernel while this
        // module was written, right ones in another; not understood, caught by the
        // bit-for-bit tests; this form needs no integer logic)
        let negative = s.less_than_i32s(s.transmute_i32s_f32s(x), s.splat_i32s(0));
        let y = s.select_f32s(negative, s.neg_f32s(y), y);
        s.select_f32s(s.equal_f32s(x, x), y, x)
    }
}

#[cfg(test)]
mod tests;
