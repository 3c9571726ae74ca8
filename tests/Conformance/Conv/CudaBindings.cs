using Higher.Cuda;

namespace Higher.Conformance.Conv;

/// <summary>
/// The CUDA device for the conv suites: registered with <see cref="Backends"/> once per run when
/// <see cref="CudaBackend.TryCreate"/> succeeds; otherwise every test reports skipped with its
/// reason, never passed.
/// </summary>
internal static class CudaForConv
{
    private static readonly Lazy<string?> Unavailable = new(() =>
    {
        if (!CudaBackend.TryCreate(out var backend, out string reason))
        {
            return reason;
        }
        Backends.Register(backend!);
        return null;
    });

    public static string? SkipReason => Unavailable.Value is { } reason ? $"CUDA backend unavailable: {reason}" : null;
}

/// <summary>The convolution fixtures on the CUDA backend.</summary>
public sealed class ConvFixtureTestsOnCuda : ConvFixtureTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => CudaForConv.SkipReason;
}

/// <summary>The conv-net tests on the CUDA backend.</summary>
public sealed class ConvNetTestsOnCuda : ConvNetTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => CudaForConv.SkipReason;
}

/// <summary>The convolution failure twins on the CUDA backend.</summary>
public sealed class ConvErrorTestsOnCuda : ConvErrorTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => CudaForConv.SkipReason;
}
