using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    // ------------------------------------------------------------------ unary primitives

    private Tensor RawUnary(UnaryOp op, double alpha = 0, double beta = 0)
    {
        if (!DType.IsFloatingPoint())
        {
            RequireFloat(op.ToString(), op == UnaryOp.Affine);
        }
        var y = Empty(Backend, DType, Shape);
        Backend.Unary(op, Storage, y.Storage, alpha, beta);
        return y;
    }

    /// <summary>The unary kernel <paramref name="op"/> recorded with its row of the derivatives table (the gradcheck catalog reaches every kernel through it).</summary>
    internal Tensor Unary(UnaryOp op, double alpha = 0, double beta = 0)
    {
        var y = RawUnary(op, alpha, beta);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Unary(op).Record(y, new Scalars(alpha, beta), [this]);
        }
        return y;
    }

    private void RequireFloat(string op, bool allowInt = false)
    {
        if (!DType.IsFloatingPoint() && !(allowInt && DType == DType.Int64))
        {
            throw new ArgumentException($"{op} needs a floating-point tensor; got {Describe()}.");
        }
    }

    /// <summary>y = alpha·x + beta in one kernel; dy/dx = alpha.</summary>
    public Tensor Affine(double alpha, double beta) => Unary(UnaryOp.Affine, alpha, beta);

    /// <summary>y = -x.</summary>
    public Tensor Neg() => Unary(UnaryOp.Affine, -1, 0);

    /// <summary>y = exp(x); dy/dx = y.</summary>
    public Tensor Exp() => Unary(UnaryOp.Exp);

    /// <summary>y = ln x; dy/dx = 1/x.</summary>
    public Tensor Log() => Unary(UnaryOp.Log);

    /// <summary>y = eˣ - 1, accurate near 0 (where Exp() - 1 cancels); dy/dx = y + 1.</summary>
    public Tensor Expm1() => Unary(UnaryOp.Expm1);

    /// <summary>y = ln(1 + x); dy/dx = 1/(1 + x).</summary>
    public Tensor Log1p() => Unary(UnaryOp.Log1p);

    /// <summary>y = √x; dy/dx = 1/(2y).</summary>
    public Tensor Sqrt() => Unary(UnaryOp.Sqrt);

    /// <summary>
    /// y = √x with dy/dx = 1/(2y) for x &gt; 0 and 0 at x ≤ 0, so a second moment that is exactly zero
    /// gives finite meta-gradients (the derivative of every order at 0 is 0).
    /// </summary>
    public Tensor SafeSqrt()
    {
        var y = RawUnary(UnaryOp.Sqrt);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.SafeSqrt.Record(y, default, [this]);
        }
        return y;
    }

    /// <summary>y = |x|; dy/dx = sign(x).</summary>
    public Tensor Abs() => Unary(UnaryOp.Abs);

    /// <summary>y = sign(x); dy/dx = 0.</summary>
    public Tensor Sign() => Unary(UnaryOp.Sign);

    /// <summary>y = max(x, 0); dy/dx = 1 where y &gt; 0, else 0.</summary>
    public Tensor Relu() => Unary(UnaryOp.Relu);

    /// <summary>y = x for x &gt; 0, slope·x otherwise.</summary>
    public Tensor LeakyRelu(double negativeSlope = 0.01) => Unary(UnaryOp.LeakyRelu, negativeSlope);

    /// <summary>y = tanh x; dy/dx = 1 - y².</summary>
    public Tensor Tanh() => Unary(UnaryOp.Tanh);

    /// <summary>y = 1/(1 + e^-x); dy/dx = y(1 - y).</summary>
    public Tensor Sigmoid() => Unary(UnaryOp.Sigmoid);

    /// <summary>y = ln(1 + e^x), stable for large |x|; dy/dx = sigmoid(x).</summary>
    public Tensor Softplus() => Unary(UnaryOp.Softplus);

    /// <summary>y = ln(1 + e^(βx))/β (PyTorch's softplus; reverts to x where βx &gt; threshold).</summary>
    public Tensor Softplus(double beta, double threshold = 20)
    {
        if (beta == 1 && double.IsPositiveInfinity(threshold))
        {
            return Softplus();
        }
        var bx = this * beta;
        return Where(bx > threshold, this, bx.Softplus() / beta);
    }

    /// <summary>y = erf x; dy/dx = 2/√π · e^(-x²).</summary>
    public Tensor Erf() => Unary(UnaryOp.Erf);

    /// <summary>y = 1/x; dy/dx = -y².</summary>
    public Tensor Reciprocal() => Unary(UnaryOp.Reciprocal);

    /// <summary>y = x^p for a real scalar p; dy/dx = p·x^(p-1).</summary>
    public Tensor Pow(double exponent) => exponent switch
    {
        1 => this * 1.0,
        _ => Unary(UnaryOp.PowScalar, exponent),
    };

    /// <summary>y = x².</summary>
    public Tensor Square() => this * this;

    /// <summary>y = clamp(x, min, max); dy/dx = 1 where min ≤ x ≤ max, else 0 (PyTorch's convention).</summary>
    public Tensor Clamp(double min = double.NegativeInfinity, double max = double.PositiveInfinity)
    {
        if (min > max)
        {
            throw new ArgumentException($"Clamp of {Describe()}: min ({min}) is greater than max ({max}).");
        }
        return Unary(UnaryOp.Clamp, min, max);
    }

    /// <summary>y = sin x; dy/dx = cos x.</summary>
    public Tensor Sin() => Unary(UnaryOp.Sin);

    /// <summary>y = cos x; dy/dx = -sin x.</summary>
    public Tensor Cos() => Unary(UnaryOp.Cos);

    /// <summary>Gaussian error linear unit: exact x·Φ(x), or the tanh approximation.</summary>
    public Tensor Gelu(bool tanhApproximation = false)
    {
        if (tanhApproximation)
        {
            var inner = (this + this * this * this * 0.044715) * Math.Sqrt(2 / Math.PI);
            return this * 0.5 * (inner.Tanh() + 1);
        }
        return this * 0.5 * ((this * (1 / Math.Sqrt(2))).Erf() + 1);
    }

    // ------------------------------------------------------------------ binary primitives

    private static Tensor Binary(BinaryOp op, Tensor a, Tensor b)
    {
        // The op's name is formatted only on the failure path: this runs for every elementwise op.
        if (a.DType != b.DType || a.Device != b.Device)
        {
            CheckSameDeviceAndDType(op.ToString(), a, b);
        }
        if (op is (BinaryOp.Div or BinaryOp.Pow or BinaryOp.Maximum or BinaryOp.Minimum or BinaryOp.ReluGrad) && !a.DType.IsFloatingPoint())
        {
            a.RequireFloat(op.ToString());
        }
        else if (a.DType == DType.Bool)
        {
            throw new ArgumentException($"{op} is not defined for bool tensors ({a.Describe()}, {b.Describe()}).");
        }
        var shape = Higher.Shape.Broadcast(a.Shape, b.Shape, a.Name ?? "a", b.Name ?? "b");
        var y = Empty(a.Backend, a.DType, shape);
        a.Backend.Binary(op, a.Storage, a.Shape, b.Storage, b.Shape, y.Storage, shape);
        if (Autograd.ShouldRecord(a, b))
        {
            Derivatives.Binary(op).Record(y, default, [a, b]);
        }
        return y;
    }

    internal static void CheckSameDeviceAndDType(string op, Tensor a, Tensor b)
    {
        if (a.DType != b.DType)
        {
            throw new ArgumentException($"{op}: dtype mismatch between {a.Describe()} (a) and {b.Describe()} (b). Convert one with To(DType).");
        }
        if (a.Device != b.Device)
        {
            throw new ArgumentException($"{op}: device mismatch between {a.Describe()} on {a.Device} (a) and {b.Describe()} on {b.Device} (b).");
        }
    }

    /// <summary>Elementwise a + b with broadcasting.</summary>
    public static Tensor Add(Tensor a, Tensor b) => Binary(BinaryOp.Add, a, b);

    /// <summary>Elementwise a - b with broadcasting.</summary>
    public static Tensor Sub(Tensor a, Tensor b) => Binary(BinaryOp.Sub, a, b);

    /// <summary>Elementwise a · b with broadcasting.</summary>
    public static Tensor Mul(Tensor a, Tensor b) => Binary(BinaryOp.Mul, a, b);

    /// <summary>Elementwise a / b with broadcasting.</summary>
    public static Tensor Div(Tensor a, Tensor b) => Binary(BinaryOp.Div, a, b);

    /// <summary>Elementwise a^b; d/da = b·a^(b-1), d/db = a^b·ln a (0 where a = 0).</summary>
    public static Tensor Pow(Tensor a, Tensor b) => Binary(BinaryOp.Pow, a, b);

    /// <summary>Elementwise max(a, b); at ties the gradient is split equally (PyTorch's convention).</summary>
    public static Tensor Maximum(Tensor a, Tensor b) => Binary(BinaryOp.Maximum, a, b);

    /// <summary>Elementwise min(a, b); at ties the gradient is split equally.</summary>
    public static Tensor Minimum(Tensor a, Tensor b) => Binary(BinaryOp.Minimum, a, b);

    /// <summary>g where y &gt; 0, else 0, in one kernel: ReLU's backward (its own gradient flows to g only).</summary>
    internal static Tensor ReluGrad(Tensor g, Tensor y) => Binary(BinaryOp.ReluGrad, g, y);

    /// <summary>
    /// a + alpha·b in one kernel, as torch.add(a, b, alpha=alpha): an optimizer's update p - lr·d is
    /// one pass and one tape node instead of two; d/da = 1, d/db = alpha. The bits are those of
    /// <c>a + b * alpha</c>. Operands of different shapes (broadcasting) or non-float dtypes take
    /// that composed form.
    /// </summary>
    public static Tensor AddScaled(Tensor a, Tensor b, double alpha)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Shape != b.Shape || a.DType != b.DType || a.Device != b.Device || !a.DType.IsFloatingPoint())
        {
            return a + b * alpha;
        }
        var y = Empty(a.Backend, a.DType, a.Shape);
        a.Backend.ScaledAdd(a.Storage, b.Storage, alpha, y.Storage);
        if (Autograd.ShouldRecord(a, b))
        {
            Derivatives.ScaledAdd.Record(y, new Scalars(alpha, 0), [a, b]);
        }
        return y;
    }

    /// <summary>x^p elementwise for a tensor exponent.</summary>
    public Tensor Pow(Tensor exponent) => Pow(this, exponent);

    /// <summary>a + b.</summary>
    public static Tensor operator +(Tensor a, Tensor b) => Binary(BinaryOp.Add, a, b);

    /// <summary>a - b.</summary>
    public static Tensor operator -(Tensor a, Tensor b) => Binary(BinaryOp.Sub, a, b);

    /// <summary>a · b elementwise.</summary>
    public static Tensor operator *(Tensor a, Tensor b) => Binary(BinaryOp.Mul, a, b);

    /// <summary>a / b elementwise.</summary>
    public static Tensor operator /(Tensor a, Tensor b) => Binary(BinaryOp.Div, a, b);

    /// <summary>-x.</summary>
    public static Tensor operator -(Tensor x) => x.Neg();

    /// <summary>x + c.</summary>
    public static Tensor operator +(Tensor x, double c) => x.Affine(1, c);

    /// <summary>c + x.</summary>
    public static Tensor operator +(double c, Tensor x) => x.Affine(1, c);

    /// <summary>x - c.</summary>
    public static Tensor operator -(Tensor x, double c) => x.Affine(1, -c);

    /// <summary>c - x.</summary>
    public static Tensor operator -(double c, Tensor x) => x.Affine(-1, c);

    /// <summary>x · c.</summary>
    public static Tensor operator *(Tensor x, double c) => x.Affine(c, 0);

    /// <summary>c · x.</summary>
    public static Tensor operator *(double c, Tensor x) => x.Affine(c, 0);

    /// <summary>x / c (true division, as PyTorch does).</summary>
    public static Tensor operator /(Tensor x, double c) => x.DType.IsFloatingPoint() ? Binary(BinaryOp.Div, x, x.ConstantScalar(c)) : x.Affine(1 / c, 0);

    /// <summary>c / x.</summary>
    public static Tensor operator /(double c, Tensor x) => Binary(BinaryOp.Div, x.ConstantScalar(c), x);

    // ------------------------------------------------------------------ comparisons and selection

    private static Tensor Compare(CompareOp op, Tensor a, Tensor b)
    {
        if (a.DType != b.DType || a.Device != b.Device)
        {
            CheckSameDeviceAndDType(op.ToString(), a, b);
        }
        var shape = Higher.Shape.Broadcast(a.Shape, b.Shape, a.Name ?? "a", b.Name ?? "b");
        var y = Empty(a.Backend, DType.Bool, shape);
        a.Backend.Compare(op, a.Storage, a.Shape, b.Storage, b.Shape, y.Storage, shape);
        return y;
    }

    /// <summary>Mask a == b (not differentiable).</summary>
    public Tensor Eq(Tensor other) => Compare(CompareOp.Eq, this, other);

    /// <summary>Mask a != b.</summary>
    public Tensor Ne(Tensor other) => Compare(CompareOp.Ne, this, other);

    /// <summary>Mask a &lt; b.</summary>
    public Tensor Lt(Tensor other) => Compare(CompareOp.Lt, this, other);

    /// <summary>Mask a ≤ b.</summary>
    public Tensor Le(Tensor other) => Compare(CompareOp.Le, this, other);

    /// <summary>Mask a &gt; b.</summary>
    public Tensor Gt(Tensor other) => Compare(CompareOp.Gt, this, other);

    /// <summary>Mask a ≥ b.</summary>
    public Tensor Ge(Tensor other) => Compare(CompareOp.Ge, this, other);

    /// <summary>Mask x == c.</summary>
    public Tensor Eq(double c) => Eq(ConstantScalar(c));

    /// <summary>Mask x != c.</summary>
    public Tensor Ne(double c) => Ne(ConstantScalar(c));

    /// <summary>Mask a &lt; b.</summary>
    public static Tensor operator <(Tensor a, Tensor b) => a.Lt(b);

    /// <summary>Mask a &gt; b.</summary>
    public static Tensor operator >(Tensor a, Tensor b) => a.Gt(b);

    /// <summary>Mask a ≤ b.</summary>
    public static Tensor operator <=(Tensor a, Tensor b) => a.Le(b);

    /// <summary>Mask a ≥ b.</summary>
    public static Tensor operator >=(Tensor a, Tensor b) => a.Ge(b);

    /// <summary>Mask x &lt; c.</summary>
    public static Tensor operator <(Tensor x, double c) => x.Lt(x.ConstantScalar(c));

    /// <summary>Mask x &gt; c.</summary>
    public static Tensor operator >(Tensor x, double c) => x.Gt(x.ConstantScalar(c));

    /// <summary>Mask x ≤ c.</summary>
    public static Tensor operator <=(Tensor x, double c) => x.Le(x.ConstantScalar(c));

    /// <summary>Mask x ≥ c.</summary>
    public static Tensor operator >=(Tensor x, double c) => x.Ge(x.ConstantScalar(c));

    /// <summary>Elementwise logical and of two masks.</summary>
    public Tensor LogicalAnd(Tensor other) => Where(this, other, this);

    /// <summary>Elementwise logical or of two masks.</summary>
    public Tensor LogicalOr(Tensor other) => Where(this, this, other);

    /// <summary>Elementwise logical not of a mask.</summary>
    public Tensor LogicalNot()
    {
        if (DType != DType.Bool)
        {
            throw new ArgumentException($"LogicalNot needs a bool mask; got {Describe()}.");
        }
        return Eq(ConstantScalar(0));
    }

    /// <summary>
    /// condition ? a : b elementwise with broadcasting; the gradient reaches a where the condition
    /// holds and b elsewhere (never 0·inf, so masked branches stay finite).
    /// </summary>
    public static Tensor Where(Tensor condition, Tensor a, Tensor b)
    {
        if (condition.DType != DType.Bool)
        {
            throw new ArgumentException($"Where: the condition must be a bool mask; got {condition.Describe()}.");
        }
        CheckSameDeviceAndDType("Where", a, b);
        if (condition.Device != a.Device)
        {
            throw new ArgumentException($"Where: condition is on {condition.Device} but a is on {a.Device}.");
        }
        var shape = Higher.Shape.Broadcast(Higher.Shape.Broadcast(condition.Shape, a.Shape, "condition", "a"), b.Shape, "condition and a", "b");
        var y = Empty(a.Backend, a.DType, shape);
        a.Backend.Where(condition.Storage, condition.Shape, a.Storage, a.Shape, b.Storage, b.Shape, y.Storage, shape);
        if (Autograd.ShouldRecord(a, b))
        {
            Derivatives.Where.Record(y, default, [a, b], [condition]);
        }
        return y;
    }

    /// <summary>condition ? a : c.</summary>
    public static Tensor Where(Tensor condition, Tensor a, double c) => Where(condition, a, a.ConstantScalar(c));

    /// <summary>condition ? c : b.</summary>
    public static Tensor Where(Tensor condition, double c, Tensor b) => Where(condition, b.ConstantScalar(c), b);

    /// <summary>Converts to <paramref name="dtype"/>; differentiable between Float32 and Float64.</summary>
    public Tensor Cast(DType dtype)
    {
        if (dtype == DType)
        {
            return this;
        }
        var y = Empty(Backend, dtype, Shape);
        Backend.Cast(Storage, y.Storage);
        if (dtype.IsFloatingPoint() && Autograd.ShouldRecord(this))
        {
            Derivatives.Cast.Record(y, default, [this]);
        }
        return y;
    }

    /// <summary>Sum of the gradient over broadcast dimensions, back to <paramref name="shape"/>.</summary>
    internal Tensor SumTo(Shape shape)
    {
        if (Shape == shape)
        {
            return this;
        }
        int lead = Rank - shape.Rank;
        var flags = new bool[Rank];
        var dims = Shape.Dims;
        var target = shape.Dims;
        for (int i = 0; i < flags.Length; i++)
        {
            flags[i] = i < lead || (target[i - lead] == 1 && dims[i] != 1);
        }
        return SumFlagged(flags, keepDim: true).ReshapeTo(shape);
    }
}
