namespace Higher.GradCheck;

/// <summary>
/// The cross-backend agreement measure, free of any test framework so that the xunit properties
/// (<see cref="CrossBackendTests"/>) and the device check (tools/DeviceCheck) run the very same
/// code: a case of <see cref="OpCatalog"/> is built on a reference device and on a candidate from one
/// seed (so index tensors and masks are the same), the float inputs are copied from the reference
/// so both start from the same bits, and the forward value, the VJP g = ∂⟨y, v⟩/∂x and the
/// second-order product ∇ₓ⟨g, w⟩ are compared element by element:
/// |candidate - reference| ≤ tol·max(1, |reference|), equal non-finite values agreeing.
/// </summary>
public static class Agreement
{
    /// <summary>The outcome of one op in one dtype: the worst scaled deviation, where it was, and a failure that is not a deviation (shapes, devices, exceptions are the caller's).</summary>
    /// <param name="Worst">max over cases, outputs and elements of |c - r| / max(1, |r|) (∞ for a non-finite mismatch).</param>
    /// <param name="Detail">Where the worst deviation was, with both values and the case's seed.</param>
    /// <param name="Failure">A structural mismatch (result count, shape, dtype, device), or null.</param>
    public readonly record struct Outcome(double Worst, string Detail, string? Failure);

    /// <summary>Measures <paramref name="casesPerOp"/> cases (seeds 1000, 1001, ...) of <paramref name="build"/> in <paramref name="dtype"/>.</summary>
    public static Outcome Measure(Func<CaseGen, OpCase> build, DType dtype, Device reference, Device candidate, int casesPerOp)
    {
        ArgumentNullException.ThrowIfNull(build);
        double worst = 0;
        string detail = "";
        for (ulong s = 0; s < (ulong)casesPerOp; s++)
        {
            ulong seed = 1000 + s;
            var onReference = build(new CaseGen(seed, reference));
            var onCandidate = build(new CaseGen(seed, candidate));
            string name = $"{onReference.Describe()} in {dtype.Name()} [case seed {seed}]";
            if (onReference.Name != onCandidate.Name)
            {
                return new(worst, detail, $"{name}: the candidate built case {onCandidate.Name}");
            }
            var xr = onReference.Inputs.Select(t => t.To(dtype).Detach().WithRequiresGrad()).ToArray();
            var xc = xr.Select(t => t.Detach().To(candidate).WithRequiresGrad()).ToArray();
            var rr = Evaluate(onReference.F, xr, seed, dtype, reference);
            var rc = Evaluate(onCandidate.F, xc, seed, dtype, reference);
            if (rr.Count != rc.Count)
            {
                return new(worst, detail, $"{name}: {rr.Count} results on {reference}, {rc.Count} on {candidate}");
            }
            for (int i = 0; i < rr.Count; i++)
            {
                var (what, r) = rr[i];
                var c = rc[i].Value;
                if (r.Shape != c.Shape || r.DType != c.DType || c.Device != candidate)
                {
                    return new(worst, detail, $"{name}: {what} is {c.DType.Name()} {c.Shape} on {c.Device}, expected {r.DType.Name()} {r.Shape} on {candidate}");
                }
                var rv = r.ToDoubleArray();
                var cv = c.ToDoubleArray();
                for (int e = 0; e < rv.Length; e++)
                {
                    double error = rv[e].Equals(cv[e]) ? 0 : Math.Abs(rv[e] - cv[e]) / Math.Max(1, Math.Abs(rv[e]));
                    if (double.IsNaN(error))
                    {
                        error = double.PositiveInfinity;
                    }
                    if (error > worst)
                    {
                        worst = error;
                        detail = $"{name}: {what}{Index(r.Shape, e)} is {cv[e]:R} on {candidate} but {rv[e]:R} on {reference}";
                    }
                }
            }
        }
        return new(worst, detail, null);
    }

    /// <summary>y = f(x), g = vjp(x, v) and h = ∇ₓ⟨g, w⟩ for v and w drawn from the seed on <paramref name="drawOn"/>.</summary>
    public static List<(string What, Tensor Value)> Evaluate(Func<Tensor[], Tensor> f, Tensor[] x, ulong seed, DType dtype, Device drawOn)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(x);
        var device = x.Length > 0 ? x[0].Device : drawOn;
        var rng = new Generator(seed ^ 0x5DEECE66DUL);
        var results = new List<(string, Tensor)>();
        var y = f(x);
        results.Add(("forward", y));
        if (!y.RequiresGrad)
        {
            return results;
        }
        var v = Tensor.Randn(y.Shape, DType.Float64, rng, drawOn).To(y.DType).To(device);
        var g = Autograd.Grad([y], x, [v], createGraph: true, allowUnused: true);
        Tensor? inner = null;
        for (int i = 0; i < x.Length; i++)
        {
            var gi = g[i] ?? Tensor.ZerosLike(x[i]);
            results.Add(($"vjp x{i}", gi));
            var w = Tensor.Randn(x[i].Shape, DType.Float64, rng, drawOn).To(dtype).To(device);
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

    /// <summary>Formats flat index <paramref name="flat"/> of <paramref name="shape"/> as "[i, j, k]".</summary>
    public static string Index(Shape shape, long flat)
    {
        var dims = shape.Dims;
        var idx = new long[dims.Length];
        for (int d = dims.Length - 1; d >= 0; d--)
        {
            idx[d] = flat % dims[d];
            flat /= dims[d];
        }
        return "[" + string.Join(", ", idx) + "]";
    }
}
