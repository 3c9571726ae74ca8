using Higher.Reference;

namespace Higher.GradCheck;

/// <summary>
/// Cross-backend agreement: every case of <see cref="OpCatalog"/> is built on a reference device and
/// on a candidate device from the same seed (so index tensors and masks are the same), the float
/// inputs are copied from the reference so both start from the same bits, and the forward values,
/// the first-order VJP (random gradient outputs) and the second-order product
/// ∇ₓ⟨vjp(x, v), w⟩ are compared elementwise: |candidate - reference| ≤ tol·max(1, |reference|).
/// Both float64 and float32 (the inputs cast) are compared.
/// <para>
/// To bind another backend, derive a sealed class that sets <see cref="Candidate"/> (and the
/// tolerances it can meet), registers the backend (e.g. in its constructor, with
/// <see cref="Backends.Register"/>), and returns a <see cref="SkipReason"/> when the device is
/// missing, so the tests report skipped, never passed:
/// <code>
/// public sealed class CudaCrossBackendTests : CrossBackendTests
/// {
///     protected override Device Candidate => Device.Cuda(0);
///     protected override string? SkipReason => CudaFixture.Unavailable; // null when registered
/// }
/// </code>
/// </para>
/// </summary>
public abstract class CrossBackendTests
{
    /// <summary>The device whose results are trusted.</summary>
    protected virtual Device Reference => Device.Cpu;

    /// <summary>The device under test.</summary>
    protected abstract Device Candidate { get; }

    /// <summary>Why the candidate cannot run here (the tests are then skipped), or null.</summary>
    protected virtual string? SkipReason => null;

    /// <summary>Relative tolerance in float64.</summary>
    protected virtual double Float64Tolerance => 1e-10;

    /// <summary>Relative tolerance in float32.</summary>
    protected virtual double Float32Tolerance => 1e-5;

    /// <summary>Cases per op and dtype.</summary>
    protected virtual int CasesPerOp => 4;

    /// <summary>The names of every op case.</summary>
    public static TheoryData<string> Ops => [.. OpCatalog.All.Keys];

    [Theory]
    [MemberData(nameof(Ops))]
    public void Float64_AgreesWithTheReference(string op) => Agree(op, DType.Float64, Float64Tolerance);

    [Theory]
    [MemberData(nameof(Ops))]
    public void Float32_AgreesWithTheReference(string op) => Agree(op, DType.Float32, Float32Tolerance);

    /// <summary>Moving between the devices is differentiable, to every order.</summary>
    [Fact]
    public void ToDevice_PassesGradCheckBothWays()
    {
        SkipIfUnavailable();
        var g = new CaseGen(7, Reference);
        var x = g.Uniform(new Shape(2, 3), -2, 2);
        Tensor Roundtrip(Tensor[] xs) => (xs[0].To(Candidate).Sin() * xs[0].To(Candidate)).To(Reference);
        GradChecker.GradCheck(Roundtrip, [x], name: $"{Reference} → {Candidate} → {Reference}");
        GradChecker.GradGradCheck(Roundtrip, [x], name: $"{Reference} → {Candidate} → {Reference}");
    }

    private void SkipIfUnavailable()
    {
        if (SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private void Agree(string op, DType dtype, double tolerance)
    {
        SkipIfUnavailable();
        var build = OpCatalog.All[op];
        for (ulong s = 0; s < (ulong)CasesPerOp; s++)
        {
            ulong seed = 1000 + s;
            var reference = build(new CaseGen(seed, Reference));
            var candidate = build(new CaseGen(seed, Candidate));
            string name = $"{reference.Describe()} in {dtype.Name()} [case seed {seed}]";
            Assert.Equal(reference.Name, candidate.Name);
            var xr = reference.Inputs.Select(t => t.To(dtype).Detach().WithRequiresGrad()).ToArray();
            var xc = xr.Select(t => t.Detach().To(Candidate).WithRequiresGrad()).ToArray();
            var rr = Evaluate(reference.F, xr, seed, dtype);
            var rc = Evaluate(candidate.F, xc, seed, dtype);
            Assert.Equal(rr.Count, rc.Count);
            for (int i = 0; i < rr.Count; i++)
            {
                Compare(name, rr[i].What, rr[i].Value, rc[i].Value, tolerance);
            }
        }
    }

    /// <summary>y = f(x), g = vjp(x, v) and h = ∇ₓ⟨g, w⟩ for v and w drawn from the seed on the reference device.</summary>
    private List<(string What, Tensor Value)> Evaluate(Func<Tensor[], Tensor> f, Tensor[] x, ulong seed, DType dtype)
    {
        var device = x.Length > 0 ? x[0].Device : Reference;
        var rng = new Generator(seed ^ 0x5DEECE66DUL);
        var results = new List<(string, Tensor)>();
        var y = f(x);
        results.Add(("forward", y));
        if (!y.RequiresGrad)
        {
            return results;
        }
        var v = Tensor.Randn(y.Shape, DType.Float64, rng, Reference).To(y.DType).To(device);
        var g = Autograd.Grad([y], x, [v], createGraph: true, allowUnused: true);
        Tensor? inner = null;
        for (int i = 0; i < x.Length; i++)
        {
            var gi = g[i] ?? Tensor.ZerosLike(x[i]);
            results.Add(($"vjp x{i}", gi));
            var w = Tensor.Randn(x[i].Shape, DType.Float64, rng, Reference).To(dtype).To(device);
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

    private void Compare(string name, string what, Tensor reference, Tensor candidate, double tolerance)
    {
        Assert.True(reference.Shape == candidate.Shape, $"{name}: {what} has shape {candidate.Shape} on {Candidate} but {reference.Shape} on {Reference}.");
        Assert.True(reference.DType == candidate.DType, $"{name}: {what} is {candidate.DType.Name()} on {Candidate} but {reference.DType.Name()} on {Reference}.");
        Assert.Equal(Candidate, candidate.Device);
        var r = reference.ToDoubleArray();
        var c = candidate.ToDoubleArray();
        for (int i = 0; i < r.Length; i++)
        {
            bool same = r[i].Equals(c[i]) || Math.Abs(r[i] - c[i]) <= tolerance * Math.Max(1, Math.Abs(r[i]));
            Assert.True(same, $"{name}: {what}{GradChecker.Index(reference.Shape, i)} is {c[i]:R} on {Candidate} but {r[i]:R} on {Reference}.");
        }
    }
}

/// <summary>
/// A second CPU device (cpu:1) served by a single-threaded Reference backend. Binding the
/// cross-backend tests to it checks the harness itself, that no op strays to the default device,
/// and the Reference's promise of the same bits whatever the thread count (tolerance 0).
/// </summary>
public sealed class SingleThreadedCpuCrossBackendTests : CrossBackendTests
{
    private static readonly Device SecondCpu = new(DeviceType.Cpu, 1);

    static SingleThreadedCpuCrossBackendTests() => Backends.Register(new ForwardingBackend(new ReferenceBackend(maxDegreeOfParallelism: 1), SecondCpu));

    protected override Device Candidate => SecondCpu;

    protected override double Float64Tolerance => 0;

    protected override double Float32Tolerance => 0;
}
