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
        var outcome = Agreement.Measure(OpCatalog.All[op], dtype, Reference, Candidate, CasesPerOp);
        Assert.True(outcome.Failure is null, outcome.Failure);
        Assert.True(outcome.Worst <= tolerance, $"{outcome.Detail} (scaled deviation {outcome.Worst:R} > {tolerance:R}).");
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
