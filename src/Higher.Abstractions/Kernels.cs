namespace Higher;

/// <summary>
/// Elementwise unary kernels, y = f(x) with optional scalar parameters <c>alpha</c> and <c>beta</c>.
/// Inputs and output have the same dtype (floating point unless stated).
/// </summary>
public enum UnaryOp
{
    /// <summary>y = alpha * x + beta (also for Int64).</summary>
    Affine,
    /// <summary>y = exp(x).</summary>
    Exp,
    /// <summary>y = ln(x).</summary>
    Log,
    /// <summary>y = ln(1 + x), accurate near 0.</summary>
    Log1p,
    /// <summary>y = sqrt(x).</summary>
    Sqrt,
    /// <summary>y = |x|.</summary>
    Abs,
    /// <summary>y = sign(x) in {-1, 0, 1}; NaN stays NaN.</summary>
    Sign,
    /// <summary>y = max(x, 0).</summary>
    Relu,
    /// <summary>y = x if x &gt; 0 else alpha * x.</summary>
    LeakyRelu,
    /// <summary>y = tanh(x).</summary>
    Tanh,
    /// <summary>y = 1 / (1 + exp(-x)), computed without overflow for large |x|.</summary>
    Sigmoid,
    /// <summary>y = log(1 + exp(x)) computed stably as max(x, 0) + log1p(exp(-|x|)).</summary>
    Softplus,
    /// <summary>y = erf(x).</summary>
    Erf,
    /// <summary>y = 1 / x.</summary>
    Reciprocal,
    /// <summary>y = x ^ alpha (alpha a real scalar; pow semantics of the C library).</summary>
    PowScalar,
    /// <summary>y = min(max(x, alpha), beta).</summary>
    Clamp,
    /// <summary>y = sin(x).</summary>
    Sin,
    /// <summary>y = cos(x).</summary>
    Cos,
}

/// <summary>
/// Elementwise binary kernels with NumPy broadcasting, y = f(a, b). a, b and y share one dtype.
/// </summary>
public enum BinaryOp
{
    /// <summary>y = a + b (also Int64).</summary>
    Add,
    /// <summary>y = a - b (also Int64).</summary>
    Sub,
    /// <summary>y = a * b (also Int64).</summary>
    Mul,
    /// <summary>y = a / b.</summary>
    Div,
    /// <summary>y = a ^ b (pow of the C library).</summary>
    Pow,
    /// <summary>y = max(a, b); NaN if either is NaN.</summary>
    Maximum,
    /// <summary>y = min(a, b); NaN if either is NaN.</summary>
    Minimum,
}

/// <summary>Elementwise comparisons with broadcasting; the output is a Bool storage.</summary>
public enum CompareOp
{
    /// <summary>a == b.</summary>
    Eq,
    /// <summary>a != b.</summary>
    Ne,
    /// <summary>a &lt; b.</summary>
    Lt,
    /// <summary>a &lt;= b.</summary>
    Le,
    /// <summary>a &gt; b.</summary>
    Gt,
    /// <summary>a &gt;= b.</summary>
    Ge,
}

/// <summary>Reductions over a set of axes.</summary>
public enum ReduceOp
{
    /// <summary>Sum (0 over an empty set).</summary>
    Sum,
    /// <summary>Maximum (-inf over an empty set); NaN propagates.</summary>
    Max,
    /// <summary>Minimum (+inf over an empty set); NaN propagates.</summary>
    Min,
}
