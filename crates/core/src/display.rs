//! PyTorch-style printing: `tensor([[1.0000, 2.0000], ...])`, summarized past 1000 elements.

use std::fmt;

use crate::element::Element;
use crate::tensor::Tensor;

const THRESHOLD: usize = 1000;
const EDGE: usize = 3;

fn fmt_value<E: Element>(v: E) -> String {
    format!("{:.4}", v)
}

fn write_dim<E: Element>(
    f: &mut fmt::Formatter<'_>,
    data: &[E],
    shape: &[usize],
    indent: usize,
    summarize: bool,
) -> fmt::Result {
    if shape.is_empty() {
        return write!(f, "{}", fmt_value(data[0]));
    }
    let n = shape[0];
    let stride: usize = shape[1..].iter().product();
    let shown: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain([None])
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    write!(f, "[")?;
    for (k, i) in shown.iter().enumerate() {
        if k > 0 {
            if shape.len() == 1 {
                write!(f, ", ")?;
            } else {
                write!(
                    f,
                    ",{}{}",
                    "\n".repeat(shape.len() - 1),
                    " ".repeat(indent + 1)
                )?;
            }
        }
        match i {
            Some(i) => write_dim(
                f,
                &data[i * stride..(i + 1) * stride],
                &shape[1..],
                indent + 1,
                summarize,
            )?,
            None => write!(f, "...")?,
        }
    }
    write!(f, "]")
}

impl<E: Element> fmt::Display for Tensor<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.contiguous_data();
        write!(f, "tensor(")?;
        if self.numel() == 0 {
            write!(f, "[], size={:?}", self.shape())?;
        } else {
            write_dim(f, &data, self.shape(), 7, self.numel() > THRESHOLD)?;
        }
        if E::DTYPE != crate::DType::F32 {
            write!(f, ", dtype={}", E::DTYPE)?;
        }
        if let Some(op) = self.op_name() {
            write!(f, ", grad_fn=<{op}>")?;
        } else if self.is_leaf() {
            write!(f, ", requires_grad=True")?;
        }
        write!(f, ")")
    }
}

impl<E: Element> fmt::Debug for Tensor<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={}, id={}) ",
            self.shape(),
            E::DTYPE,
            self.id().as_u64()
        )?;
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn prints_like_pytorch() {
        let t = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2]).unwrap();
        assert_eq!(
            t.to_string(),
            "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]])"
        );
        assert_eq!(Tensor::<f32>::scalar(0.5).to_string(), "tensor(0.5000)");
    }

    #[test]
    fn summarizes_big_tensors() {
        let s = Tensor::<f32>::zeros(&[2000]).to_string();
        assert!(s.contains("..."));
        assert!(s.len() < 100);
    }
}
