using FsCheck.Xunit;

namespace Higher.GradCheck;

/// <summary>
/// Third and fourth derivatives: nested <see cref="Autograd.Grad(Tensor, Tensor, Tensor?, bool)"/> with
/// createGraph against closed forms, and gradcheck/gradgradcheck of functions that are themselves
/// second derivatives (so finite differences check orders three and four).
/// </summary>
[Properties(MaxTest = 20, Arbitrary = [typeof(Arbitraries)], Replay = GradCheckSeeds.Replay)]
public sealed class HigherOrderTests
{
    private const double Tolerance = 1e-12;

    /// <summary>f(x), f'(x), ..., f⁽ⁿ⁾(x) of an elementwise f, each the gradient of the sum of the previous one.</summary>
    private static Tensor[] Derivatives(Func<Tensor, Tensor> f, Tensor x, int order)
    {
        using var record = Autograd.EnableGrad();
        var leaf = x.RequiresGrad ? x : x.Detach().WithRequiresGrad();
        var d = new Tensor[order + 1];
        d[0] = f(leaf);
        for (int i = 1; i <= order; i++)
        {
            d[i] = Autograd.Grad(d[i - 1].Sum(), leaf, createGraph: true);
        }
        return d;
    }

    private static void AssertClose(Tensor actual, double[] expected, string what)
    {
        var a = actual.ToDoubleArray();
        Assert.Equal(expected.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
        {
            double err = Math.Abs(a[i] - expected[i]);
            Assert.True(err <= Tolerance * Math.Max(1, Math.Abs(expected[i])), $"{what}[{i}]: {a[i]:R} != {expected[i]:R} (error {err:G3})");
        }
    }

    private static Tensor Point(CaseSeed seed, double lo, double hi)
    {
        var g = new CaseGen(seed.Value, Device.Cpu);
        return g.Uniform(g.Shape(minRank: 1, maxRank: 2), lo, hi);
    }

    [Property]
    public void Sin_DerivativesCycleWithPeriodFour(CaseSeed seed)
    {
        var x = Point(seed, -4, 4);
        var v = x.ToDoubleArray();
        var d = Derivatives(t => t.Sin(), x, 4);
        AssertClose(d[1], [.. v.Select(Math.Cos)], "sin'");
        AssertClose(d[2], [.. v.Select(t => -Math.Sin(t))], "sin''");
        AssertClose(d[3], [.. v.Select(t => -Math.Cos(t))], "sin'''");
        AssertClose(d[4], [.. v.Select(Math.Sin)], "sin''''");
    }

    [Property]
    public void Tanh_DerivativesMatchClosedForms(CaseSeed seed)
    {
        var x = Point(seed, -3, 3);
        var t = x.ToDoubleArray().Select(Math.Tanh).ToArray();
        var s = t.Select(y => 1 - (y * y)).ToArray();
        var d = Derivatives(u => u.Tanh(), x, 4);
        AssertClose(d[1], s, "tanh'");
        AssertClose(d[2], [.. t.Select((y, i) => -2 * y * s[i])], "tanh''");
        AssertClose(d[3], [.. t.Select((y, i) => -2 * s[i] * (1 - (3 * y * y)))], "tanh'''");
        AssertClose(d[4], [.. t.Select((y, i) => 8 * y * s[i] * (2 - (3 * y * y)))], "tanh''''");
    }

    /// <summary>f = eˣ·sin x: f'' = 2eˣ cos x, f'''' = -4f.</summary>
    [Property]
    public void ExpSin_FourthDerivativeIsMinusFourTimesTheFunction(CaseSeed seed)
    {
        var x = Point(seed, -2, 2);
        var v = x.ToDoubleArray();
        var d = Derivatives(t => t.Exp() * t.Sin(), x, 4);
        AssertClose(d[1], [.. v.Select(t => Math.Exp(t) * (Math.Sin(t) + Math.Cos(t)))], "f'");
        AssertClose(d[2], [.. v.Select(t => 2 * Math.Exp(t) * Math.Cos(t))], "f''");
        AssertClose(d[3], [.. v.Select(t => 2 * Math.Exp(t) * (Math.Cos(t) - Math.Sin(t)))], "f'''");
        AssertClose(d[4], [.. v.Select(t => -4 * Math.Exp(t) * Math.Sin(t))], "f''''");
    }

    /// <summary>f(x) = (a·x)⁴ through matmul: the fourth directional derivative along u is 24 (a·u)⁴ (its gradient 24 (a·u)³ a).</summary>
    [Property]
    public void DotPower_FourthDirectionalDerivative(CaseSeed seed)
    {
        var g = new CaseGen(seed.Value, Device.Cpu);
        int n = g.Int(1, 5);
        var a = g.Normal(new Shape(n));
        var u = g.Normal(new Shape(n));
        var x = g.Normal(new Shape(n)).WithRequiresGrad();
        var grad = Autograd.Grad(Tensor.MatMul(a, x).Pow(4), x, createGraph: true);
        for (int order = 2; order <= 4; order++)
        {
            grad = Autograd.Grad(Tensor.Dot(grad, u), x, createGraph: true);
        }
        double au = Tensor.Dot(a, u).Item();
        AssertClose(grad, [.. a.ToDoubleArray().Select(ai => 24 * au * au * au * ai)], "∇ D³f[u,u,u]");
    }

    /// <summary>Third order by finite differences of the analytical second derivative, fourth by gradgradcheck of it.</summary>
    [Property(MaxTest = 10)]
    public void Tanh_ThirdAndFourthOrderGradCheck(CaseSeed seed)
    {
        var x = Point(seed, -2, 2);
        GradChecker.GradCheck(xs => Derivatives(t => t.Tanh(), xs[0], 2)[2], [x], name: "tanh''");
        GradChecker.GradGradCheck(xs => Derivatives(t => t.Tanh(), xs[0], 2)[2], [x], seed: seed.Value, name: "tanh''");
    }

    [Property(MaxTest = 10)]
    public void ExpSin_ThirdAndFourthOrderGradCheck(CaseSeed seed)
    {
        var x = Point(seed, -2, 2);
        GradChecker.GradCheck(xs => Derivatives(t => t.Exp() * t.Sin(), xs[0], 2)[2], [x], name: "(exp·sin)''");
        GradChecker.GradGradCheck(xs => Derivatives(t => t.Exp() * t.Sin(), xs[0], 2)[2], [x], seed: seed.Value, name: "(exp·sin)''");
    }

    /// <summary>
    /// A tanh MLP's cross-entropy loss L(θ): the Hessian-vector product θ ↦ ∇⟨∇L(θ), u⟩ is
    /// gradchecked (third derivatives of L) and gradgradchecked (fourth).
    /// </summary>
    [Property(MaxTest = 5)]
    public void MlpLoss_ThirdAndFourthOrderGradCheck(CaseSeed seed)
    {
        var g = new CaseGen(seed.Value, Device.Cpu);
        int batch = g.Int(1, 3), fin = g.Int(1, 3), hidden = g.Int(1, 3), classes = g.Int(2, 3);
        var input = g.Normal(new Shape(batch, fin));
        var target = g.Index(new Shape(batch), classes);
        Tensor[] theta = [g.Normal(new Shape(hidden, fin)), g.Normal(new Shape(hidden)), g.Normal(new Shape(classes, hidden)), g.Normal(new Shape(classes))];
        var u = theta.Select(p => g.Normal(p.Shape)).ToArray();

        Tensor[] HessianVectorProduct(Tensor[] ps)
        {
            using var record = Autograd.EnableGrad();
            var leaves = ps.Select(p => p.RequiresGrad ? p : p.Detach().WithRequiresGrad()).ToArray();
            var hiddenLayer = Tensor.Linear(input, leaves[0], leaves[1]).Tanh();
            var loss = F.CrossEntropy(Tensor.Linear(hiddenLayer, leaves[2], leaves[3]), target);
            var grads = Autograd.Grad([loss], leaves, createGraph: true);
            var inner = grads.Select((gr, i) => (gr! * u[i]).Sum()).Aggregate((s, t) => s + t);
            return [.. Autograd.Grad([inner], leaves, createGraph: true, allowUnused: true).Select((h, i) => h ?? Tensor.ZerosLike(leaves[i]))];
        }

        GradChecker.GradCheckMany(HessianVectorProduct, theta, name: "mlp Hessian-vector product");
        GradChecker.GradGradCheckMany(HessianVectorProduct, theta, seed: seed.Value, name: "mlp Hessian-vector product");
    }

    /// <summary>
    /// Training batch norm (a primitive whose gradients are primitives): the Hessian-vector product of
    /// L(x, w, b) = Σ v·tanh(BN(x; w, b)) is gradchecked (third derivatives of L) and gradgradchecked
    /// (fourth), so the derivatives of its input gradient's own derivative formula are checked too.
    /// </summary>
    [Property(MaxTest = 4)]
    public void BatchNorm_ThirdAndFourthOrderGradCheck(CaseSeed seed)
    {
        var g = new CaseGen(seed.Value, Device.Cpu);
        int c = g.Int(1, 2);
        var x = g.Normal(new Shape(g.Int(1, 2), c, g.Int(2, 3)));
        Tensor[] theta = [x, g.AwayFromZero(new Shape(c), 0.5, 1.5), g.Normal(new Shape(c))];
        var v = g.Normal(x.Shape);
        var u = theta.Select(p => g.Normal(p.Shape)).ToArray();

        Tensor[] HessianVectorProduct(Tensor[] ps)
        {
            using var record = Autograd.EnableGrad();
            var leaves = ps.Select(p => p.RequiresGrad ? p : p.Detach().WithRequiresGrad()).ToArray();
            var loss = (Tensor.BatchNorm(leaves[0], null, null, leaves[1], leaves[2], training: true).Tanh() * v).Sum();
            var grads = Autograd.Grad([loss], leaves, createGraph: true);
            var inner = grads.Select((gr, i) => (gr! * u[i]).Sum()).Aggregate((s, t) => s + t);
            return [.. Autograd.Grad([inner], leaves, createGraph: true, allowUnused: true).Select((h, i) => h ?? Tensor.ZerosLike(leaves[i]))];
        }

        GradChecker.GradCheckMany(HessianVectorProduct, theta, name: $"batch-norm Hessian-vector product, x {x.Shape}");
        GradChecker.GradGradCheckMany(HessianVectorProduct, theta, seed: seed.Value, name: $"batch-norm Hessian-vector product, x {x.Shape}");
    }
}
