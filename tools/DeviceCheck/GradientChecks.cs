using Higher.GradCheck;

namespace Higher.DeviceCheck;

/// <summary>
/// GradCheck's cross-backend property, outside xunit: every case of <see cref="OpCatalog"/> (the
/// same catalog the tests bind; its MlpLoss case is a two-layer MLP's loss) is built on the CPU and
/// on the candidate from one seed, the float inputs are copied from the CPU so both start from the
/// same bits, and the forward value, the VJP g = ∂⟨y, v⟩/∂x and the second-order product
/// ∂⟨g, w⟩/∂x are compared element by element: |candidate − reference| ≤ tol·max(1, |reference|),
/// tol 1e-10 in float64 and 1e-5 in float32.
/// </summary>
internal static class GradientChecks
{
    public static void Run(Device candidate, int casesPerOp, Report report)
    {
        foreach (var (op, build) in OpCatalog.All)
        {
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                report.Add(Agree(op, build, dtype, candidate, casesPerOp));
            }
        }
    }

    private static CheckResult Agree(string op, Func<CaseGen, OpCase> build, DType dtype, Device candidate, int casesPerOp)
    {
        double tolerance = dtype == DType.Float32 ? 1e-5 : 1e-10;
        double worst = 0;
        string detail = "";
        for (ulong s = 0; s < (ulong)casesPerOp; s++)
        {
            ulong seed = 1000 + s;
            try
            {
                var reference = build(new CaseGen(seed, Device.Cpu));
                var onCandidate = build(new CaseGen(seed, candidate));
                var xr = reference.Inputs.Select(t => t.To(dtype).Detach().WithRequiresGrad()).ToArray();
                var xc = xr.Select(t => t.Detach().To(candidate).WithRequiresGrad()).ToArray();
                var rr = Evaluate(reference.F, xr, seed, dtype);
                var rc = Evaluate(onCandidate.F, xc, seed, dtype);
                if (rr.Count != rc.Count)
                {
                    return Fail($"{rr.Count} results on the CPU, {rc.Count} on {candidate} [seed {seed}]");
                }
                for (int i = 0; i < rr.Count; i++)
                {
                    var (what, r) = rr[i];
                    var c = rc[i].Value;
                    if (r.Shape != c.Shape || r.DType != c.DType || c.Device != candidate)
                    {
                        return Fail($"{what}: {c.DType.Name()}{c.Shape} on {c.Device}, expected {r.DType.Name()}{r.Shape} on {candidate} [seed {seed}]");
                    }
                    double error = Errors.Elementwise(r.ToDoubleArray(), c.ToDoubleArray());
                    if (error > worst || double.IsNaN(error))
                    {
                        worst = error;
                        detail = $"{what} of {reference.Describe()} [seed {seed}]";
                    }
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Fail($"{e.GetType().Name}: {e.Message} [seed {seed}]");
            }
        }
        bool passed = worst <= tolerance;
        return new CheckResult("gradients (1st, 2nd order)", op, dtype.Name(), passed, worst, tolerance, passed ? "" : detail);

        CheckResult Fail(string why) => new("gradients (1st, 2nd order)", op, dtype.Name(), false, double.PositiveInfinity, tolerance, why);
    }

    /// <summary>y = f(x), g = vjp(x, v) and h = ∇ₓ⟨g, w⟩, with v and w drawn from the seed on the CPU.</summary>
    private static List<(string What, Tensor Value)> Evaluate(Func<Tensor[], Tensor> f, Tensor[] x, ulong seed, DType dtype)
    {
        var device = x.Length > 0 ? x[0].Device : Device.Cpu;
        var rng = new Generator(seed ^ 0x5DEECE66DUL);
        var results = new List<(string, Tensor)>();
        var y = f(x);
        results.Add(("forward", y));
        if (!y.RequiresGrad)
        {
            return results;
        }
        var v = Tensor.Randn(y.Shape, DType.Float64, rng).To(y.DType).To(device);
        var g = Autograd.Grad([y], x, [v], createGraph: true, allowUnused: true);
        Tensor? inner = null;
        for (int i = 0; i < x.Length; i++)
        {
            var gi = g[i] ?? Tensor.ZerosLike(x[i]);
            results.Add(($"vjp x{i}", gi));
            var w = Tensor.Randn(x[i].Shape, DType.Float64, rng).To(dtype).To(device);
            var term = (gi * w).Sum();
            inner = inner is null ? term : inner + term;
        }
        if (inner is null || !inner.RequiresGrad)
        {
            return results;
        }
        var h = Autograd.Grad([inner], x, allowUnused: true);
        for (int i = 0; i < x.Length; i++)
        {
            results.Add(($"second-order x{i}", h[i] ?? Tensor.ZerosLike(x[i])));
        }
        return results;
    }
}
