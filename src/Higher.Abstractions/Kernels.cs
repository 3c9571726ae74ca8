namespace Higher;

// Every kernel enum has explicit values: they cross the native ABI (native/kernels.cu lists the
// same names and values, a test checks the two lists, and KernelOpSet.Hash, which both sides
// compute, is the ABI's op-set check). Never renumber; append.

/// <summary>
/// Elementwise unary kernels, y = f(x) with optional scalar parameters <c>alpha</c> and <c>beta</c>.
/// Inputs and output have the same dtype (floating point unless stated).
/// </summary>
public enum UnaryOp
{
    /// <summary>y = alpha * x + beta (also for Int64).</summary>
    Affine = 0,
    /// <summary>y = exp(x).</summary>
    Exp = 1,
    /// <summary>y = ln(x).</summary>
    Log = 2,
    /// <summary>y = ln(1 + x), accurate near 0.</summary>
    Log1p = 3,
    /// <summary>y = sqrt(x).</summary>
    Sqrt = 4,
    /// <summary>y = |x|.</summary>
    Abs = 5,
    /// <summary>y = sign(x) in {-1, 0, 1}; NaN stays NaN.</summary>
    Sign = 6,
    /// <summary>y = max(x, 0).</summary>
    Relu = 7,
    /// <summary>y = x if x &gt; 0 else alpha * x.</summary>
    LeakyRelu = 8,
    /// <summary>y = tanh(x).</summary>
    Tanh = 9,
    /// <summary>y = 1 / (1 + exp(-x)), computed without overflow for large |x|.</summary>
    Sigmoid = 10,
    /// <summary>y = log(1 + exp(x)) computed stably as max(x, 0) + log1p(exp(-|x|)).</summary>
    Softplus = 11,
    /// <summary>y = erf(x).</summary>
    Erf = 12,
    /// <summary>y = 1 / x.</summary>
    Reciprocal = 13,
    /// <summary>y = x ^ alpha (alpha a real scalar; pow semantics of the C library).</summary>
    PowScalar = 14,
    /// <summary>y = min(max(x, alpha), beta).</summary>
    Clamp = 15,
    /// <summary>y = sin(x).</summary>
    Sin = 16,
    /// <summary>y = cos(x).</summary>
    Cos = 17,
    /// <summary>y = exp(x) - 1, accurate near 0.</summary>
    Expm1 = 18,
}

/// <summary>
/// Elementwise binary kernels with NumPy broadcasting, y = f(a, b). a, b and y share one dtype.
/// </summary>
public enum BinaryOp
{
    /// <summary>y = a + b (also Int64).</summary>
    Add = 0,
    /// <summary>y = a - b (also Int64).</summary>
    Sub = 1,
    /// <summary>y = a * b (also Int64).</summary>
    Mul = 2,
    /// <summary>y = a / b.</summary>
    Div = 3,
    /// <summary>y = a ^ b (pow of the C library).</summary>
    Pow = 4,
    /// <summary>y = max(a, b); NaN if either is NaN.</summary>
    Maximum = 5,
    /// <summary>y = min(a, b); NaN if either is NaN.</summary>
    Minimum = 6,
    /// <summary>
    /// y = a where b &gt; 0, else 0 (also where b is NaN): the gradient a of a ReLU whose output (or
    /// input) is b, in one pass and without a mask; a NaN in a passes where b &gt; 0.
    /// </summary>
    ReluGrad = 7,
}

/// <summary>Elementwise comparisons with broadcasting; the output is a Bool storage.</summary>
public enum CompareOp
{
    /// <summary>a == b.</summary>
    Eq = 0,
    /// <summary>a != b.</summary>
    Ne = 1,
    /// <summary>a &lt; b.</summary>
    Lt = 2,
    /// <summary>a &lt;= b.</summary>
    Le = 3,
    /// <summary>a &gt; b.</summary>
    Gt = 4,
    /// <summary>a &gt;= b.</summary>
    Ge = 5,
}

/// <summary>Reductions over a set of axes.</summary>
public enum ReduceOp
{
    /// <summary>Sum (0 over an empty set).</summary>
    Sum = 0,
    /// <summary>Maximum (-inf over an empty set); NaN propagates.</summary>
    Max = 1,
    /// <summary>Minimum (+inf over an empty set); NaN propagates.</summary>
    Min = 2,
}
