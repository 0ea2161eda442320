//! Configuration of the recurrent stacks ([`RnnConfig`]) and cells ([`CellConfig`]), and their
//! validation.

use retrograd_core::{Error, Result};

/// The activation of a plain (Elman) RNN: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
///
/// ```
/// use retrograd_nn::rnn::Nonlinearity;
/// assert_eq!(Nonlinearity::default(), Nonlinearity::Tanh);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nonlinearity {
    /// `tanh` (PyTorch's `nonlinearity='tanh'`, the default).
    #[default]
    Tanh,
    /// `relu` (PyTorch's `nonlinearity='relu'`).
    Relu,
}

/// The recurrence a cell computes; one shared driver runs all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Elman RNN with the given activation (1 gate block).
    Rnn(Nonlinearity),
    /// LSTM, gate rows i, f, g, o (4 blocks).
    Lstm,
    /// GRU, gate rows r, z, n (3 blocks).
    Gru,
}

impl CellKind {
    /// Number of gate blocks stacked in `weight_ih` / `weight_hh`.
    pub(crate) fn gates(self) -> usize {
        match self {
            CellKind::Rnn(_) => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// The stack's name in error messages.
    pub(crate) fn stack_name(self) -> &'static str {
        match self {
            CellKind::Rnn(_) => "rnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// The cell's name in error messages.
    pub(crate) fn cell_name(self) -> &'static str {
        match self {
            CellKind::Rnn(_) => "rnn_cell",
            CellKind::Lstm => "lstm_cell",
            CellKind::Gru => "gru_cell",
        }
    }
}

/// Hyper-parameters of a recurrent stack ([`Rnn`](super::Rnn), [`Lstm`](super::Lstm),
/// [`Gru`](super::Gru)), mirroring the constructor arguments of `torch.nn.RNN/LSTM/GRU`.
///
/// Start from [`RnnConfig::new`] (PyTorch's defaults) and chain the builder methods.
/// `nonlinearity` is used by [`Rnn`](super::Rnn) only and `proj_size` by [`Lstm`](super::Lstm)
/// only; setting them for another kind is a construction error.
///
/// ```
/// use retrograd_nn::rnn::RnnConfig;
/// let cfg = RnnConfig::new(8, 16).num_layers(2).bidirectional(true).dropout(0.1);
/// assert_eq!((cfg.input_size, cfg.hidden_size, cfg.num_layers), (8, 16, 2));
/// assert!(cfg.bias && !cfg.batch_first);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnConfig {
    /// Features per time step of the input (`H_in`).
    pub input_size: usize,
    /// Features of the hidden state (`H`).
    pub hidden_size: usize,
    /// Number of stacked layers (default 1).
    pub num_layers: usize,
    /// Activation of a plain RNN (default tanh).
    pub nonlinearity: Nonlinearity,
    /// Whether the layers have `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Input and output as (N, L, H) instead of (L, N, H) (default false). States are
    /// (layers·dirs, N, H) either way.
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer except the last, in training mode
    /// (default 0).
    pub dropout: f64,
    /// Run a reverse direction too and concatenate its outputs (default false).
    pub bidirectional: bool,
    /// LSTM only: project each hidden state to this size with `weight_hr` (0 = off).
    pub proj_size: usize,
}

impl RnnConfig {
    /// A one-layer, unidirectional, time-major config with biases and no dropout.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        }
    }

    /// Sets the number of layers.
    pub fn num_layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }

    /// Sets the activation (plain RNN only).
    pub fn nonlinearity(mut self, act: Nonlinearity) -> Self {
        self.nonlinearity = act;
        self
    }

    /// Turns the biases on or off.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Chooses (N, L, H) (true) or (L, N, H) (false) for input and output.
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets the inter-layer dropout probability, in `[0, 1)`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Adds a reverse direction.
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// Sets the LSTM projection size (0 = none; otherwise below `hidden_size`).
    pub fn proj_size(mut self, p: usize) -> Self {
        self.proj_size = p;
        self
    }

    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of h (and of each direction's output): `proj_size` if set, else `hidden_size`.
    pub fn output_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Checks the config for a stack of the given kind.
    pub(crate) fn validate(&self, kind: CellKind) -> Result<()> {
        let name = kind.stack_name();
        check_sizes(name, self.input_size, self.hidden_size)?;
        if self.num_layers == 0 {
            return Err(Error::invalid(name, "num_layers must be at least 1, got 0"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                name,
                format!("dropout must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.proj_size > 0 {
            if kind != CellKind::Lstm {
                return Err(Error::invalid(
                    name,
                    format!("proj_size {} is only supported by lstm", self.proj_size),
                ));
            }
            if self.proj_size >= self.hidden_size {
                return Err(Error::invalid(
                    name,
                    format!(
                        "proj_size {} must be smaller than hidden_size {}",
                        self.proj_size, self.hidden_size
                    ),
                ));
            }
        }
        check_nonlinearity(name, kind, self.nonlinearity)
    }
}

/// Hyper-parameters of a single cell ([`RnnCell`](super::RnnCell), [`LstmCell`](super::LstmCell),
/// [`GruCell`](super::GruCell)), like the arguments of `torch.nn.RNNCell/LSTMCell/GRUCell`.
///
/// ```
/// use retrograd_nn::rnn::{CellConfig, Nonlinearity};
/// let cfg = CellConfig::new(3, 5).bias(false).nonlinearity(Nonlinearity::Relu);
/// assert_eq!((cfg.input_size, cfg.hidden_size, cfg.bias), (3, 5, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellConfig {
    /// Features of the input.
    pub input_size: usize,
    /// Features of the hidden state.
    pub hidden_size: usize,
    /// Whether the cell has `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Activation of an [`RnnCell`](super::RnnCell) (default tanh; other cells reject relu).
    pub nonlinearity: Nonlinearity,
}

impl CellConfig {
    /// A cell with biases and tanh activation.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        CellConfig {
            input_size,
            hidden_size,
            bias: true,
            nonlinearity: Nonlinearity::Tanh,
        }
    }

    /// Turns the biases on or off.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets the activation (RnnCell only).
    pub fn nonlinearity(mut self, act: Nonlinearity) -> Self {
        self.nonlinearity = act;
        self
    }

    pub(crate) fn validate(&self, kind: CellKind) -> Result<()> {
        let name = kind.cell_name();
        check_sizes(name, self.input_size, self.hidden_size)?;
        check_nonlinearity(name, kind, self.nonlinearity)
    }
}

fn check_sizes(name: &'static str, input_size: usize, hidden_size: usize) -> Result<()> {
    if input_size == 0 {
        return Err(Error::invalid(name, "input_size must be positive, got 0"));
    }
    if hidden_size == 0 {
        return Err(Error::invalid(name, "hidden_size must be positive, got 0"));
    }
    Ok(())
}

fn check_nonlinearity(name: &'static str, kind: CellKind, act: Nonlinearity) -> Result<()> {
    if act == Nonlinearity::Relu && !matches!(kind, CellKind::Rnn(_)) {
        return Err(Error::invalid(
            name,
            "nonlinearity relu only applies to a plain rnn",
        ));
    }
    Ok(())
}
