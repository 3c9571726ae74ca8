using Higher.Tests.Shared;

namespace Higher.Conformance.Conv;

/// <summary>The convolution fixtures on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ConvFixtureTestsOnCuda : ConvFixtureTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The conv-net tests on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ConvNetTestsOnCuda : ConvNetTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The convolution failure twins on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ConvErrorTestsOnCuda : ConvErrorTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The ReLU-and-pool order tests on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ReluPoolOrderTestsOnCuda : ReluPoolOrderTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}
