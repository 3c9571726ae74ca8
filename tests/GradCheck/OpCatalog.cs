using static Higher.GradCheck.CaseGen;

namespace Higher.GradCheck;

/// <summary>
/// Every differentiable op of the engine as a gradcheck case drawn from a <see cref="CaseGen"/>.
/// Inputs stay away from points where the op is not differentiable (|x| ≥ 0.1 around kinks at 0,
/// distinct values for max/min, x &gt; 0 for log/sqrt/pow, ...), since a central difference across a
/// kink measures the average of two one-sided slopes, not a derivative.
/// </summary>
public static class OpCatalog
{
    /// <summary>All cases by name (the names of the builder methods).</summary>
    public static IReadOnlyDictionary<string, Func<CaseGen, OpCase>> All { get; } = WithEveryUnaryKernel(new Dictionary<string, Func<CaseGen, OpCase>>(StringComparer.Ordinal)
    {
        [nameof(Affine)] = Affine,
        [nameof(Neg)] = Neg,
        [nameof(ScalarArithmetic)] = ScalarArithmetic,
        [nameof(Exp)] = Exp,
        [nameof(Log)] = Log,
        [nameof(Log1p)] = Log1p,
        [nameof(Sqrt)] = Sqrt,
        [nameof(SafeSqrt)] = SafeSqrt,
        [nameof(Abs)] = Abs,
        [nameof(Sign)] = Sign,
        [nameof(Relu)] = Relu,
        [nameof(LeakyRelu)] = LeakyRelu,
        [nameof(Sigmoid)] = Sigmoid,
        [nameof(Tanh)] = Tanh,
        [nameof(Softplus)] = Softplus,
        [nameof(SoftplusBeta)] = SoftplusBeta,
        [nameof(Erf)] = Erf,
        [nameof(Gelu)] = Gelu,
        [nameof(GeluTanh)] = GeluTanh,
        [nameof(Reciprocal)] = Reciprocal,
        [nameof(PowScalar)] = PowScalar,
        [nameof(PowTensor)] = PowTensor,
        [nameof(Clamp)] = Clamp,
        [nameof(Sin)] = Sin,
        [nameof(Cos)] = Cos,
        [nameof(Square)] = Square,
        [nameof(Clone)] = Clone,
        [nameof(CastRoundTrip)] = CastRoundTrip,
        [nameof(Add)] = Add,
        [nameof(Sub)] = Sub,
        [nameof(Mul)] = Mul,
        [nameof(Div)] = Div,
        [nameof(ReluGrad)] = ReluGrad,
        [nameof(AddScaled)] = AddScaled,
        [nameof(MulSelf)] = MulSelf,
        [nameof(Maximum)] = Maximum,
        [nameof(Minimum)] = Minimum,
        [nameof(Where)] = Where,
        [nameof(WhereScalar)] = WhereScalar,
        [nameof(Sum)] = Sum,
        [nameof(Mean)] = Mean,
        [nameof(Var)] = Var,
        [nameof(Std)] = Std,
        [nameof(Amax)] = Amax,
        [nameof(Amin)] = Amin,
        [nameof(MaxAlongAxis)] = MaxAlongAxis,
        [nameof(MinAlongAxis)] = MinAlongAxis,
        [nameof(LogSumExp)] = LogSumExp,
        [nameof(Softmax)] = Softmax,
        [nameof(LogSoftmax)] = LogSoftmax,
        [nameof(Reshape)] = Reshape,
        [nameof(Permute)] = Permute,
        [nameof(Transpose)] = Transpose,
        [nameof(Expand)] = Expand,
        [nameof(Squeeze)] = Squeeze,
        [nameof(Unsqueeze)] = Unsqueeze,
        [nameof(Flatten)] = Flatten,
        [nameof(Cat)] = Cat,
        [nameof(Stack)] = Stack,
        [nameof(Narrow)] = Narrow,
        [nameof(Select)] = Select,
        [nameof(Slice)] = Slice,
        [nameof(Split)] = Split,
        [nameof(IndexSelect)] = IndexSelect,
        [nameof(Gather)] = Gather,
        [nameof(ScatterAdd)] = ScatterAdd,
        [nameof(IndexAdd)] = IndexAdd,
        [nameof(MatMul)] = MatMul,
        [nameof(Linear)] = Linear,
        [nameof(MseLoss)] = MseLoss,
        [nameof(L1Loss)] = L1Loss,
        [nameof(CrossEntropy)] = CrossEntropy,
        [nameof(NllLoss)] = NllLoss,
        [nameof(BceWithLogits)] = BceWithLogits,
        [nameof(MlpLoss)] = MlpLoss,
        [nameof(ConvCatalog.Conv2d)] = ConvCatalog.Conv2d,
        [nameof(ConvCatalog.Conv2dSame)] = ConvCatalog.Conv2dSame,
        [nameof(ConvCatalog.ConvTranspose2d)] = ConvCatalog.ConvTranspose2d,
        [nameof(ConvCatalog.Conv1dAndTranspose)] = ConvCatalog.Conv1dAndTranspose,
        [nameof(ConvCatalog.MaxPool2d)] = ConvCatalog.MaxPool2d,
        [nameof(ConvCatalog.AvgPool2d)] = ConvCatalog.AvgPool2d,
        [nameof(ConvCatalog.AvgPool2dDivisorOverride)] = ConvCatalog.AvgPool2dDivisorOverride,
        [nameof(ConvCatalog.AdaptiveAvgPool2d)] = ConvCatalog.AdaptiveAvgPool2d,
        [nameof(ConvCatalog.Pad)] = ConvCatalog.Pad,
        [nameof(ConvCatalog.BatchNormTraining)] = ConvCatalog.BatchNormTraining,
        [nameof(ConvCatalog.BatchNormEvaluation)] = ConvCatalog.BatchNormEvaluation,
    });

    /// <summary>
    /// Adds a case "Unary kernel X" for every <see cref="UnaryOp"/>, drawn from the smooth interval of
    /// its row in the shared test table (UnarySpecs), so a new unary primitive is gradchecked (first and
    /// second order, and across backends) with no case of its own here.
    /// </summary>
    private static Dictionary<string, Func<CaseGen, OpCase>> WithEveryUnaryKernel(Dictionary<string, Func<CaseGen, OpCase>> cases)
    {
        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            var spec = Higher.Conformance.Kernels.UnarySpecs.For(op);
            cases[$"Unary kernel {op}"] = g => Unary($"unary kernel {op}", g.Uniform(g.Shape(allowEmpty: true), spec.GradLo, spec.GradHi),
                x => x.Unary(op, spec.Alpha, spec.Beta));
        }
        return cases;
    }

    private static OpCase Unary(string name, Tensor x, Func<Tensor, Tensor> f) => new(name, xs => f(xs[0]), [x]);

    private static OpCase Binary(string name, Tensor a, Tensor b, Func<Tensor, Tensor, Tensor> f) => new(name, xs => f(xs[0], xs[1]), [a, b]);

    // ------------------------------------------------------------------ unary

    public static OpCase Affine(CaseGen g)
    {
        double a = g.Real(-2, 2), b = g.Real(-1, 1);
        return Unary($"affine({Fmt(a)}, {Fmt(b)})", g.Normal(g.Shape(allowEmpty: true)), x => x.Affine(a, b));
    }

    public static OpCase Neg(CaseGen g) => Unary("neg", g.Normal(g.Shape(allowEmpty: true)), x => -x);

    /// <summary>The scalar operators: x + c, c - x, x·c, x / c, c / x.</summary>
    public static OpCase ScalarArithmetic(CaseGen g)
    {
        double c = g.Real(0.5, 2);
        return Unary($"scalar arithmetic (c = {Fmt(c)})", g.AwayFromZero(g.Shape(), 0.5, 2),
            x => ((c - x) * 3) + (x / c) + (c / x) - 1.5 + ((2 + x) * x) + (c * x));
    }

    public static OpCase Exp(CaseGen g) => Unary("exp", g.Uniform(g.Shape(allowEmpty: true), -2, 2), x => x.Exp());

    public static OpCase Log(CaseGen g) => Unary("log", g.Uniform(g.Shape(), 0.2, 3), x => x.Log());

    public static OpCase Log1p(CaseGen g) => Unary("log1p", g.Uniform(g.Shape(), -0.7, 3), x => x.Log1p());

    public static OpCase Sqrt(CaseGen g) => Unary("sqrt", g.Uniform(g.Shape(), 0.2, 3), x => x.Sqrt());

    public static OpCase SafeSqrt(CaseGen g) => Unary("safe sqrt", g.Uniform(g.Shape(allowEmpty: true), 0.2, 3), x => x.SafeSqrt());

    public static OpCase Abs(CaseGen g) => Unary("abs", g.AwayFromZero(g.Shape(allowEmpty: true)), x => x.Abs());

    public static OpCase Sign(CaseGen g) => Unary("sign", g.AwayFromZero(g.Shape()), x => x.Sign());

    public static OpCase Relu(CaseGen g) => Unary("relu", g.AwayFromZero(g.Shape(allowEmpty: true)), x => x.Relu());

    public static OpCase LeakyRelu(CaseGen g)
    {
        double slope = g.Pick(0.01, 0.2, -0.5, 1.5);
        return Unary($"leaky relu (slope {Fmt(slope)})", g.AwayFromZero(g.Shape()), x => x.LeakyRelu(slope));
    }

    public static OpCase Sigmoid(CaseGen g) => Unary("sigmoid", g.Uniform(g.Shape(), -4, 4), x => x.Sigmoid());

    public static OpCase Tanh(CaseGen g) => Unary("tanh", g.Uniform(g.Shape(allowEmpty: true), -3, 3), x => x.Tanh());

    public static OpCase Softplus(CaseGen g) => Unary("softplus", g.Uniform(g.Shape(), -6, 6), x => x.Softplus());

    /// <summary>Softplus(β, threshold): ln(1 + e^(βx))/β, x itself where βx &gt; threshold. βx stays 0.1 away from the threshold.</summary>
    public static OpCase SoftplusBeta(CaseGen g)
    {
        double beta = g.Pick(0.5, 1.0, 2.0, 3.0);
        double threshold = g.Pick(20.0, 1.5, 0.0, double.PositiveInfinity);
        var shape = g.Shape();
        Tensor x = double.IsFinite(threshold)
            ? g.FromHost(shape, () => (threshold + ((g.Chance(0.5) ? -1 : 1) * g.Real(0.1, 3))) / beta)
            : g.Uniform(shape, -4, 4);
        return Unary($"softplus(beta {Fmt(beta)}, threshold {Fmt(threshold)})", x, t => t.Softplus(beta, threshold));
    }

    public static OpCase Erf(CaseGen g) => Unary("erf", g.Uniform(g.Shape(), -2, 2), x => x.Erf());

    public static OpCase Gelu(CaseGen g) => Unary("gelu", g.Normal(g.Shape(), 1.5), x => x.Gelu());

    public static OpCase GeluTanh(CaseGen g) => Unary("gelu (tanh)", g.Normal(g.Shape(), 1.5), x => x.Gelu(tanhApproximation: true));

    public static OpCase Reciprocal(CaseGen g) => Unary("reciprocal", g.AwayFromZero(g.Shape(), 0.3, 2), x => x.Reciprocal());

    /// <summary>x^p: integer p on both signs of x, other p on x &gt; 0.</summary>
    public static OpCase PowScalar(CaseGen g)
    {
        double p = g.Pick(-2, -1.5, -1, -0.5, 0, 0.5, 1, 2, 2.5, 3);
        var shape = g.Shape(allowEmpty: true);
        var x = Math.Round(p) == p ? g.AwayFromZero(shape, 0.3, 2) : g.Uniform(shape, 0.3, 2);
        return Unary($"pow(x, {Fmt(p)})", x, t => t.Pow(p));
    }

    /// <summary>a^b with broadcasting, a &gt; 0 (the gradient in b is a^b·ln a).</summary>
    public static OpCase PowTensor(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        return Binary("pow(a, b)", g.Uniform(s[0], 0.3, 2), g.Uniform(s[1], -2, 2), (a, b) => a.Pow(b));
    }

    /// <summary>clamp(x, min, max) with one bound sometimes infinite; x stays 0.05 away from both bounds.</summary>
    public static OpCase Clamp(CaseGen g)
    {
        double lo = g.Real(-1, 0), hi = g.Real(0, 1);
        switch (g.Int(0, 2))
        {
            case 0:
                lo = double.NegativeInfinity;
                break;
            case 1:
                hi = double.PositiveInfinity;
                break;
        }
        var x = g.FromHost(g.Shape(), () =>
        {
            while (true)
            {
                double v = g.Real(-1.5, 1.5);
                if (Math.Abs(v - lo) >= 0.05 && Math.Abs(v - hi) >= 0.05)
                {
                    return v;
                }
            }
        });
        return Unary($"clamp({Fmt(lo)}, {Fmt(hi)})", x, t => t.Clamp(lo, hi));
    }

    public static OpCase Sin(CaseGen g) => Unary("sin", g.Uniform(g.Shape(allowEmpty: true), -4, 4), x => x.Sin());

    public static OpCase Cos(CaseGen g) => Unary("cos", g.Uniform(g.Shape(), -4, 4), x => x.Cos());

    public static OpCase Square(CaseGen g) => Unary("square", g.Normal(g.Shape()), x => x.Square());

    public static OpCase Clone(CaseGen g) => Unary("clone", g.Normal(g.Shape(allowEmpty: true)), x => x.Clone());

    /// <summary>
    /// float64 → float32 → float64. The step is 1e-2 because float32 rounding (ulp 2.4e-7 below 2)
    /// divided by 2ε must stay under atol; the function is linear, so a large step costs nothing.
    /// </summary>
    public static OpCase CastRoundTrip(CaseGen g) =>
        Unary("cast float64→float32→float64", g.Uniform(g.Shape(allowEmpty: true), -2, 2), x => x.Cast(DType.Float32).Cast(DType.Float64) * 1.5) with { Eps = 1e-2 };

    // ------------------------------------------------------------------ binary, broadcasting

    public static OpCase Add(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        return Binary("a + b", g.Normal(s[0]), g.Normal(s[1]), (a, b) => a + b);
    }

    public static OpCase Sub(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        return Binary("a - b", g.Normal(s[0]), g.Normal(s[1]), (a, b) => a - b);
    }

    public static OpCase Mul(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        return Binary("a * b", g.Normal(s[0]), g.Normal(s[1]), (a, b) => a * b);
    }

    public static OpCase Div(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        return Binary("a / b", g.Normal(s[0]), g.AwayFromZero(s[1], 0.5, 2), (a, b) => a / b);
    }

    /// <summary>relu_grad(a, b) = a where b &gt; 0, else 0 (ReLU's backward kernel): b away from 0, so its derivative is 0 and none flows to it.</summary>
    public static OpCase ReluGrad(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        var b = g.AwayFromZero(s[1]) * g.FromHost(s[1], () => g.Pick(-1.0, 1.0));
        return Binary("relu_grad(a, b)", g.Normal(s[0]), b.Detach(), Tensor.ReluGrad);
    }

    /// <summary>a + alpha·b in one kernel (the SGD update's form), alpha of either sign.</summary>
    public static OpCase AddScaled(CaseGen g)
    {
        var shape = g.Shape(allowEmpty: true);
        double alpha = g.Pick(-0.1, 0.5, -2.0, 1.0);
        return Binary($"add_scaled(a, b, {Fmt(alpha)})", g.Normal(shape), g.Normal(shape), (a, b) => Tensor.AddScaled(a, b, alpha));
    }

    /// <summary>x·x as one Mul whose two inputs are the same tensor (its backward returns g·x to both), times b so the second order sees both paths.</summary>
    public static OpCase MulSelf(CaseGen g)
    {
        var shape = g.Shape(allowEmpty: true);
        return Binary("(a * a) * b", g.Normal(shape), g.Normal(shape), (a, b) => a * a * b);
    }

    /// <summary>a on the grid 0.4ℤ, b on 0.4ℤ + 0.2, both jittered by 0.03: never within 0.14 of each other.</summary>
    private static (Tensor A, Tensor B) Untied(CaseGen g, Shape sa, Shape sb) =>
        (g.FromHost(sa, () => (0.4 * g.Int(-3, 3)) + g.Real(-0.03, 0.03)),
         g.FromHost(sb, () => (0.4 * g.Int(-3, 3)) + 0.2 + g.Real(-0.03, 0.03)));

    public static OpCase Maximum(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        var (a, b) = Untied(g, s[0], s[1]);
        return Binary("maximum(a, b)", a, b, Tensor.Maximum);
    }

    public static OpCase Minimum(CaseGen g)
    {
        var s = g.BroadcastShapes(2, allowEmpty: true);
        var (a, b) = Untied(g, s[0], s[1]);
        return Binary("minimum(a, b)", a, b, Tensor.Minimum);
    }

    /// <summary>where(c, a, b) with all three broadcasting.</summary>
    public static OpCase Where(CaseGen g)
    {
        var s = g.BroadcastShapes(3, allowEmpty: true);
        var condition = g.Mask(s[0]);
        return Binary($"where(mask {s[0]}, a, b)", g.Normal(s[1]), g.Normal(s[2]), (a, b) => Tensor.Where(condition, a, b));
    }

    public static OpCase WhereScalar(CaseGen g)
    {
        var s = g.BroadcastShapes(2);
        var c1 = g.Mask(s[0]);
        var c2 = g.Mask(s[0]);
        return Unary($"where with scalars (mask {s[0]})", g.Normal(s[1]), x => Tensor.Where(c1, x, 0.5) * Tensor.Where(c2, -1.5, x));
    }

    // ------------------------------------------------------------------ reductions

    public static OpCase Sum(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        switch (g.Int(0, 2))
        {
            case 0:
                return Unary("sum()", x, t => t.Sum());
            case 1 when x.Rank > 0:
                {
                    int axis = g.Axis(x.Rank);
                    bool keep = g.Chance(0.5);
                    return Unary($"sum(axis {axis}, keepDim {keep})", x, t => t.Sum(axis, keep));
                }
            default:
                {
                    var axes = g.Axes(x.Rank);
                    bool keep = g.Chance(0.5);
                    return Unary($"sum({Fmt(axes)}, keepDim {keep})", x, t => t.Sum(axes, keep));
                }
        }
    }

    public static OpCase Mean(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        var axes = g.Axes(x.Rank);
        bool keep = g.Chance(0.5);
        return Unary($"mean({Fmt(axes)}, keepDim {keep})", x, t => t.Mean(axes, keep));
    }

    private static long Count(Shape shape, int[]? axes)
    {
        if (axes is null)
        {
            return shape.Numel;
        }
        long n = 1;
        foreach (int a in axes)
        {
            n *= shape[a];
        }
        return n;
    }

    /// <summary>Variance with Bessel's correction 1 only where at least two elements are reduced (else 1/0).</summary>
    public static OpCase Var(CaseGen g)
    {
        var shape = g.Shape(allowEmpty: true);
        var axes = g.Axes(shape.Rank);
        int correction = Count(shape, axes) >= 2 ? g.Int(0, 1) : 0;
        bool keep = g.Chance(0.5);
        return Unary($"var({Fmt(axes)}, correction {correction}, keepDim {keep})", g.Normal(shape), t => t.Var(axes, correction, keep));
    }

    /// <summary>Standard deviation over at least two distinct values (√ has no derivative at a zero variance).</summary>
    public static OpCase Std(CaseGen g)
    {
        while (true)
        {
            var shape = g.Shape();
            var axes = g.Axes(shape.Rank);
            if (Count(shape, axes) < 2)
            {
                continue;
            }
            int correction = g.Int(0, 1);
            bool keep = g.Chance(0.5);
            return Unary($"std({Fmt(axes)}, correction {correction}, keepDim {keep})", g.Distinct(shape), t => t.Std(axes, correction, keep));
        }
    }

    public static OpCase Amax(CaseGen g)
    {
        var x = g.Distinct(g.Shape());
        if (g.Chance(0.2))
        {
            return Unary("max()", x, t => t.Max());
        }
        var axes = g.Axes(x.Rank);
        bool keep = g.Chance(0.5);
        return Unary($"amax({Fmt(axes)}, keepDim {keep})", x, t => t.Amax(axes, keep));
    }

    public static OpCase Amin(CaseGen g)
    {
        var x = g.Distinct(g.Shape());
        if (g.Chance(0.2))
        {
            return Unary("min()", x, t => t.Min());
        }
        var axes = g.Axes(x.Rank);
        bool keep = g.Chance(0.5);
        return Unary($"amin({Fmt(axes)}, keepDim {keep})", x, t => t.Amin(axes, keep));
    }

    public static OpCase MaxAlongAxis(CaseGen g)
    {
        var x = g.Distinct(g.Shape(minRank: 1));
        int axis = g.Axis(x.Rank);
        bool keep = g.Chance(0.5);
        return Unary($"max(axis {axis}, keepDim {keep}).Values", x, t => t.Max(axis, keep).Values);
    }

    public static OpCase MinAlongAxis(CaseGen g)
    {
        var x = g.Distinct(g.Shape(minRank: 1));
        int axis = g.Axis(x.Rank);
        bool keep = g.Chance(0.5);
        return Unary($"min(axis {axis}, keepDim {keep}).Values", x, t => t.Min(axis, keep).Values);
    }

    public static OpCase LogSumExp(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1), 2);
        var axes = g.Axes(x.Rank) ?? Enumerable.Range(0, x.Rank).ToArray();
        bool keep = g.Chance(0.5);
        return Unary($"logsumexp({Fmt(axes)}, keepDim {keep})", x, t => t.LogSumExp(axes, keep));
    }

    public static OpCase Softmax(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1), 2);
        int axis = g.Axis(x.Rank);
        return Unary($"softmax(axis {axis})", x, t => t.Softmax(axis));
    }

    public static OpCase LogSoftmax(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1), 2);
        int axis = g.Axis(x.Rank);
        return Unary($"log-softmax(axis {axis})", x, t => t.LogSoftmax(axis));
    }

    // ------------------------------------------------------------------ shape

    /// <summary>Reshape (and View) to a shuffle of the dimensions, with size-1 dimensions added and one -1 sometimes.</summary>
    public static OpCase Reshape(CaseGen g)
    {
        var dims = g.Dims(allowEmpty: true);
        var x = g.Normal(new Shape(dims));
        var target = new List<int>();
        foreach (int i in g.Permutation(dims.Length))
        {
            target.Add(dims[i]);
        }
        int ones = g.Int(0, 2);
        for (int i = 0; i < ones; i++)
        {
            target.Insert(g.Int(0, target.Count), 1);
        }
        if (x.Numel > 0 && target.Count > 0 && g.Chance(0.4))
        {
            target[g.Int(0, target.Count - 1)] = -1;
        }
        var t = target.ToArray();
        bool view = g.Chance(0.3);
        return Unary($"{(view ? "view" : "reshape")}({Fmt(t)})", x, a => (view ? a.View(t) : a.Reshape(t)) * 2.0);
    }

    public static OpCase Permute(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        var perm = g.Permutation(x.Rank);
        for (int i = 0; i < perm.Length; i++)
        {
            if (g.Chance(0.3))
            {
                perm[i] -= x.Rank;
            }
        }
        return Unary($"permute({Fmt(perm)})", x, t => t.Permute(perm));
    }

    /// <summary>Transpose of two axes, MT (last two) and T (rank ≤ 2).</summary>
    public static OpCase Transpose(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1, allowEmpty: true));
        switch (g.Int(0, 2))
        {
            case 0 when x.Rank >= 2:
                return Unary("MT", x, t => t.MT);
            case 1 when x.Rank <= 2:
                return Unary("T", x, t => t.T);
            default:
                {
                    int a = g.Axis(x.Rank), b = g.Axis(x.Rank);
                    return Unary($"transpose({a}, {b})", x, t => t.Transpose(a, b));
                }
        }
    }

    /// <summary>Expand (and BroadcastTo): size-1 dimensions repeat (even to 0), new leading dimensions, -1 keeps a size.</summary>
    public static OpCase Expand(CaseGen g)
    {
        var dims = g.Dims(maxDim: 3);
        var target = new List<int>();
        int lead = g.Int(0, 2);
        for (int i = 0; i < lead; i++)
        {
            target.Add(g.Int(1, 3));
        }
        foreach (int d in dims)
        {
            if (d == 1 && g.Chance(0.6))
            {
                target.Add(g.Chance(0.1) ? 0 : g.Int(2, 3));
            }
            else
            {
                target.Add(g.Chance(0.3) ? -1 : d);
            }
        }
        var t = target.ToArray();
        var x = g.Normal(new Shape(dims));
        if (!t.Contains(-1) && g.Chance(0.3))
        {
            return Unary($"broadcastTo({Fmt(t)})", x, a => a.BroadcastTo(new Shape(t)));
        }
        return Unary($"expand({Fmt(t)})", x, a => a.Expand(t));
    }

    public static OpCase Squeeze(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        if (x.Rank == 0 || g.Chance(0.4))
        {
            return Unary("squeeze()", x, t => t.Squeeze());
        }
        var axes = g.Axes(x.Rank) ?? [g.Axis(x.Rank)];
        return Unary($"squeeze({Fmt(axes)})", x, t => t.Squeeze(axes));
    }

    public static OpCase Unsqueeze(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        int axis = g.Int(-(x.Rank + 1), x.Rank);
        return Unary($"unsqueeze({axis})", x, t => t.Unsqueeze(axis));
    }

    public static OpCase Flatten(CaseGen g)
    {
        var x = g.Normal(g.Shape(allowEmpty: true));
        if (x.Rank == 0)
        {
            return Unary("flatten()", x, t => t.Flatten());
        }
        int s = g.Int(0, x.Rank - 1), e = g.Int(s, x.Rank - 1);
        int start = g.Chance(0.3) ? s - x.Rank : s, end = g.Chance(0.3) ? e - x.Rank : e;
        return Unary($"flatten({start}, {end})", x, t => t.Flatten(start, end));
    }

    public static OpCase Cat(CaseGen g)
    {
        var dims = g.Dims(minRank: 1, maxDim: 3, maxNumel: 8);
        int axis = g.Axis(dims.Length);
        int count = g.Int(1, 3);
        var inputs = new Tensor[count];
        for (int i = 0; i < count; i++)
        {
            var d = (int[])dims.Clone();
            d[axis < 0 ? axis + d.Length : axis] = g.Int(0, 3);
            inputs[i] = g.Normal(new Shape(d));
        }
        return new OpCase($"cat(axis {axis})", xs => Tensor.Cat(xs, axis), inputs);
    }

    public static OpCase Stack(CaseGen g)
    {
        var shape = g.Shape(maxRank: 2, allowEmpty: true);
        int axis = g.Int(-(shape.Rank + 1), shape.Rank);
        int count = g.Int(1, 3);
        var inputs = new Tensor[count];
        for (int i = 0; i < count; i++)
        {
            inputs[i] = g.Normal(shape);
        }
        return new OpCase($"stack(axis {axis})", xs => Tensor.Stack(xs, axis), inputs);
    }

    public static OpCase Narrow(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1, allowEmpty: true));
        int axis = g.Axis(x.Rank);
        int n = x.Shape[axis];
        int start = g.Int(0, n);
        int length = g.Int(0, n - start);
        if (start < n && g.Chance(0.3))
        {
            start -= n;
        }
        return Unary($"narrow(axis {axis}, start {start}, length {length})", x, t => t.Narrow(axis, start, length));
    }

    /// <summary>Select (and the row indexer) at an index that is negative sometimes.</summary>
    public static OpCase Select(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1));
        int axis = g.Axis(x.Rank);
        int n = x.Shape[axis];
        int index = g.Int(-n, n - 1);
        if (g.Chance(0.25))
        {
            int row = g.Int(-x.Shape[0], x.Shape[0] - 1);
            return Unary($"x[{row}]", x, t => t[row]);
        }
        return Unary($"select(axis {axis}, index {index})", x, t => t.Select(axis, index));
    }

    /// <summary>Python-style slicing: start and end out of range or negative, step 1..3.</summary>
    public static OpCase Slice(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1, allowEmpty: true));
        int axis = g.Axis(x.Rank);
        int n = x.Shape[axis];
        int start = g.Int(-n - 2, n + 2), end = g.Int(-n - 2, n + 2), step = g.Int(1, 3);
        return Unary($"slice(axis {axis}, {start}:{end}:{step})", x, t => t.Slice(axis, start, end, step));
    }

    /// <summary>Split into pieces, each weighted differently so that a mixed-up piece shows, then concatenated.</summary>
    public static OpCase Split(CaseGen g)
    {
        var x = g.Normal(g.Shape(minRank: 1));
        int axis = g.Axis(x.Rank);
        int size = g.Int(1, 3);
        return Unary($"split(size {size}, axis {axis})", x, t =>
        {
            var parts = t.Split(size, axis);
            for (int i = 0; i < parts.Length; i++)
            {
                parts[i] *= i + 1.0;
            }
            return Tensor.Cat(parts, axis);
        });
    }

    // ------------------------------------------------------------------ indexing (repeated indices accumulate)

    private static (Tensor X, int Axis, int Size) WithNonEmptyAxis(CaseGen g)
    {
        while (true)
        {
            var x = g.Normal(g.Shape(minRank: 1, allowEmpty: true));
            int axis = g.Axis(x.Rank);
            if (x.Shape[axis] > 0)
            {
                return (x, axis, x.Shape[axis]);
            }
        }
    }

    private static Shape WithAxisSize(Shape shape, int axis, int size)
    {
        var d = shape.ToArray();
        d[shape.NormalizeAxis(axis)] = size;
        return new Shape(d);
    }

    public static OpCase IndexSelect(CaseGen g)
    {
        var (x, axis, n) = WithNonEmptyAxis(g);
        var index = g.Index([g.Int(0, 4)], n);
        return Unary($"index_select(axis {axis}, {Fmt(index.ToInt64Array().Select(i => (int)i).ToArray())})", x, t => t.IndexSelect(axis, index));
    }

    public static OpCase Gather(CaseGen g)
    {
        var (x, axis, n) = WithNonEmptyAxis(g);
        var index = g.Index(WithAxisSize(x.Shape, axis, g.Int(0, 3)), n);
        return Unary($"gather(axis {axis}, index {index.Shape})", x, t => t.Gather(axis, index));
    }

    public static OpCase ScatterAdd(CaseGen g)
    {
        var (x, axis, n) = WithNonEmptyAxis(g);
        var sourceShape = WithAxisSize(x.Shape, axis, g.Int(0, 3));
        var index = g.Index(sourceShape, n);
        return Binary($"scatter_add(axis {axis}, index {index.Shape})", x, g.Normal(sourceShape), (a, s) => a.ScatterAdd(axis, index, s));
    }

    public static OpCase IndexAdd(CaseGen g)
    {
        var (x, axis, n) = WithNonEmptyAxis(g);
        int length = g.Int(0, 4);
        var index = g.Index([length], n);
        var source = g.Normal(WithAxisSize(x.Shape, axis, length));
        return Binary($"index_add(axis {axis}, {Fmt(index.ToInt64Array().Select(i => (int)i).ToArray())})", x, source, (a, s) => a.IndexAdd(axis, index, s));
    }

    // ------------------------------------------------------------------ linear algebra

    /// <summary>
    /// matmul in every arrangement: 1-D·1-D, 1-D·2-D, 2-D·1-D, 2-D·2-D, batched with broadcast batch
    /// dimensions, [..., m, k]·[k, n], 1-D against batches; sizes of 0 now and then.
    /// </summary>
    public static OpCase MatMul(CaseGen g)
    {
        int m = g.Chance(0.05) ? 0 : g.Int(1, 3), k = g.Chance(0.05) ? 0 : g.Int(1, 3), n = g.Int(1, 3);
        var batch = g.BroadcastShapes(2, maxRank: 2);
        while (batch[0].Numel > 4 || batch[1].Numel > 4)
        {
            batch = g.BroadcastShapes(2, maxRank: 2);
        }
        int[] aDims = g.Chance(0.2) ? [k] : [.. batch[0].ToArray(), m, k];
        int[] bDims = g.Chance(0.2) ? [k] : [.. batch[1].ToArray(), k, n];
        bool method = g.Chance(0.2);
        return Binary($"matmul({Fmt(aDims)}, {Fmt(bDims)})", g.Normal(new Shape(aDims)), g.Normal(new Shape(bDims)),
            (a, b) => method ? a.MatMul(b) : Tensor.MatMul(a, b));
    }

    /// <summary>x·Wᵀ + b for x of rank 1 to 3, with and without bias (also F.Linear and Dot).</summary>
    public static OpCase Linear(CaseGen g)
    {
        int fin = g.Chance(0.05) ? 0 : g.Int(1, 4), fout = g.Int(1, 4);
        int[] lead = g.Dims(0, 2, 3, maxNumel: 4);
        var x = g.Normal(new Shape([.. lead, fin]));
        var w = g.Normal(new Shape(fout, fin));
        switch (g.Int(0, 3))
        {
            case 0:
                return new OpCase($"linear(x {x.Shape}, W {w.Shape}, no bias)", xs => Tensor.Linear(xs[0], xs[1]), [x, w]);
            case 1:
                {
                    var v = g.Normal(new Shape(fin));
                    return new OpCase($"dot([{fin}], [{fin}])", xs => Tensor.Dot(xs[0], xs[1]), [v, g.Normal(new Shape(fin))]);
                }
            default:
                return new OpCase($"linear(x {x.Shape}, W {w.Shape}, bias)", xs => F.Linear(xs[0], xs[1], xs[2]), [x, w, g.Normal(new Shape(fout))]);
        }
    }

    // ------------------------------------------------------------------ losses

    private static Reduction PickReduction(CaseGen g) => g.Pick(Reduction.None, Reduction.Mean, Reduction.Sum);

    public static OpCase MseLoss(CaseGen g)
    {
        var shape = g.Shape(allowEmpty: true);
        var reduction = PickReduction(g);
        return Binary($"mse loss ({reduction})", g.Normal(shape), g.Normal(shape), (a, b) => F.MseLoss(a, b, reduction));
    }

    /// <summary>L1 loss with |input - target| ≥ 0.1.</summary>
    public static OpCase L1Loss(CaseGen g)
    {
        var shape = g.Shape();
        var reduction = PickReduction(g);
        var input = g.Normal(shape);
        var target = input + g.AwayFromZero(shape);
        return Binary($"l1 loss ({reduction})", input, target, (a, b) => F.L1Loss(a, b, reduction));
    }

    /// <summary>Int64 targets [N] in [0, C), some equal to the ignore index (but not all when the mean divides by their count).</summary>
    private static (Tensor Target, long IgnoreIndex, Reduction Reduction, string Description) ClassTargets(CaseGen g, int n, int c)
    {
        // An ignore index inside [0, C) needs C ≥ 2, or a mean could find no target to count.
        long ignore = c == 1 || g.Chance(0.5) ? -100 : g.Int(0, c - 1);
        var reduction = PickReduction(g);
        var values = new long[n];
        while (true)
        {
            for (int i = 0; i < n; i++)
            {
                values[i] = g.Chance(0.25) ? ignore : g.Int(0, c - 1);
            }
            if (reduction != Reduction.Mean || values.Any(v => v != ignore))
            {
                break;
            }
        }
        return (Tensor.FromArray(values, new Shape(n), g.Device), ignore, reduction, $"targets [{string.Join(", ", values)}], ignore {ignore}, {reduction}");
    }

    public static OpCase CrossEntropy(CaseGen g)
    {
        int n = g.Int(1, 4), c = g.Int(1, 5);
        var (target, ignore, reduction, description) = ClassTargets(g, n, c);
        double smoothing = g.Pick(0, 0.1, 0.35);
        return Unary($"cross entropy ({description}, label smoothing {Fmt(smoothing)})", g.Normal(new Shape(n, c), 2),
            x => F.CrossEntropy(x, target, reduction, smoothing, ignore));
    }

    public static OpCase NllLoss(CaseGen g)
    {
        int n = g.Int(1, 4), c = g.Int(1, 5);
        var (target, ignore, reduction, description) = ClassTargets(g, n, c);
        return Unary($"nll loss ({description})", g.Normal(new Shape(n, c)), x => F.NllLoss(x, target, reduction, ignore));
    }

    public static OpCase BceWithLogits(CaseGen g)
    {
        var shape = g.Shape(allowEmpty: true);
        var reduction = PickReduction(g);
        return Binary($"bce with logits ({reduction})", g.Normal(shape, 2), g.Uniform(shape, 0, 1),
            (x, y) => F.BinaryCrossEntropyWithLogits(x, y, reduction));
    }

    /// <summary>A two-layer tanh MLP's cross-entropy loss in all its parameters: the meta-learning workload.</summary>
    public static OpCase MlpLoss(CaseGen g)
    {
        int batch = g.Int(1, 3), fin = g.Int(1, 3), hidden = g.Int(1, 3), classes = g.Int(2, 3);
        var target = g.Index([batch], classes);
        return new OpCase($"mlp loss (batch {batch}, {fin}→{hidden}→{classes})",
            xs => F.CrossEntropy(Tensor.Linear(Tensor.Linear(xs[0], xs[1], xs[2]).Tanh(), xs[3], xs[4]), target),
            [g.Normal(new Shape(batch, fin)), g.Normal(new Shape(hidden, fin)), g.Normal(new Shape(hidden)), g.Normal(new Shape(classes, hidden)), g.Normal(new Shape(classes))]);
    }
}
