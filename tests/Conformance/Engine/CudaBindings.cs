using Higher.Tests.Shared;

namespace Higher.Conformance.Engine;

/// <summary>The single-op fixtures (forward, first and second derivatives) on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class OpFixtureTestsOnCuda : OpFixtureTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The model fixtures (MLP losses, optimizer steps, MAML meta-gradients) on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ModelFixtureTestsOnCuda : ModelFixtureTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The autograd behaviour tests on the CUDA backend.</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class AutogradTestsOnCuda : AutogradTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}

/// <summary>The failure twins on the CUDA backend (index bounds are left to the kernels there).</summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class ErrorTestsOnCuda : ErrorTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}
