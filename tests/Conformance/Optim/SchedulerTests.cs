using Higher.Optim;
using Higher.Optim.Schedulers;

namespace Higher.Conformance.Optim;

/// <summary>Scheduler validation, resuming, and driving groups that are not an <see cref="Optimizer"/>.</summary>
public sealed class SchedulerTests
{
    private static Sgd Sgd(double lr = 0.1, double momentum = 0.9) =>
        new([Tensor.Zeros([2], DType.Float64).WithRequiresGrad()], new SgdOptions { Lr = lr, Momentum = momentum });

    /// <summary>Groups held as plain dictionaries, as a differentiable optimizer keeps them.</summary>
    private sealed class PlainGroups(params Dictionary<string, double>[] groups) : IHyperParameterGroups
    {
        public IReadOnlyList<IDictionary<string, double>> HyperParameterGroups { get; } = groups;
    }

    /// <summary>Saving optimizer and scheduler halfway and loading both into fresh ones continues the schedule exactly.</summary>
    [Fact]
    public void StateDicts_ResumeTheScheduleExactly()
    {
        static (Sgd Opt, LRScheduler[] Schedulers) Build()
        {
            var opt = Sgd(0.2);
            opt.AddParamGroup(new ParamGroup([Tensor.Zeros([1], DType.Float64).WithRequiresGrad()], new Dictionary<string, double> { ["lr"] = 0.05 }));
            return (opt, [new CosineAnnealingLR(opt, tMax: 7, etaMin: 0.01)]);
        }

        var (whole, wholeSchedulers) = Build();
        var expected = new List<double[]>();
        for (int i = 0; i < 10; i++)
        {
            wholeSchedulers[0].Step();
            expected.Add(wholeSchedulers[0].GetLastLr().ToArray());
        }

        var (first, firstSchedulers) = Build();
        for (int i = 0; i < 4; i++)
        {
            firstSchedulers[0].Step();
        }
        var optState = first.StateDict();
        var schedulerState = firstSchedulers[0].StateDict();

        var (resumed, resumedSchedulers) = Build();
        resumed.LoadStateDict(optState);
        resumedSchedulers[0].LoadStateDict(schedulerState);
        Assert.Equal(4, resumedSchedulers[0].LastEpoch);
        for (int i = 4; i < 10; i++)
        {
            resumedSchedulers[0].Step();
            Assert.Equal(expected[i], resumedSchedulers[0].GetLastLr().ToArray());
        }
        Assert.Equal(whole.ParamGroups.Select(g => g["lr"]), resumed.ParamGroups.Select(g => g["lr"]));

        var bad = schedulerState with { BaseLrs = [0.2] };
        Assert.Contains("2 parameter groups", Assert.Throws<ArgumentException>(() => resumedSchedulers[0].LoadStateDict(bad)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Schedulers_DriveAnyHyperParameterGroups()
    {
        var groups = new PlainGroups(new Dictionary<string, double> { ["lr"] = 1.0, ["beta1"] = 0.9 });
        var exponential = new ExponentialLR(groups, 0.5);
        exponential.Step();
        exponential.Step();
        Assert.Equal(0.25, groups.HyperParameterGroups[0]["lr"]);
        Assert.Equal(1.0, groups.HyperParameterGroups[0]["initial_lr"]);
        var onecycle = new OneCycleLR(new PlainGroups(new Dictionary<string, double> { ["lr"] = 1.0, ["beta1"] = 0.9 }), 2.0, 10);
        Assert.Equal(0.08, onecycle.GetLastLr()[0], 15);
        Assert.Equal(0.95, onecycle.Optimizer.HyperParameterGroups[0]["beta1"]);
    }

    [Fact]
    public void StepLR_Resumes_FromInitialLr()
    {
        var sgd = Sgd();
        var first = new StepLR(sgd, 2, 0.5);
        for (int i = 0; i < 3; i++)
        {
            first.Step();
        }
        Assert.Equal(0.05, sgd.ParamGroups[0]["lr"]);
        var resumed = new StepLR(sgd, 2, 0.5, lastEpoch: 3);
        Assert.Equal(4, resumed.LastEpoch);
        Assert.Equal([0.1], resumed.BaseLrs);
        Assert.Equal(0.025, sgd.ParamGroups[0]["lr"]);
    }

    [Fact]
    public void Resume_WithoutInitialLr_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => new CosineAnnealingLR(Sgd(), 10, lastEpoch: 4));
        Assert.Contains("initial_lr", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validation()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new StepLR(Sgd(), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CosineAnnealingLR(Sgd(), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExponentialLR(Sgd(), 0.9, lastEpoch: -2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OneCycleLR(Sgd(), 1.0, totalSteps: 0));
        Assert.Contains("1.5", Assert.Throws<ArgumentException>(() => new OneCycleLR(Sgd(), 1.0, 10, new OneCycleLROptions { PctStart = 1.5 })).Message, StringComparison.Ordinal);
        Assert.Contains("momentum", Assert.Throws<ArgumentException>(() =>
            new OneCycleLR(new Adagrad([Tensor.Zeros([1]).WithRequiresGrad()]), 1.0, 10)).Message, StringComparison.Ordinal);
        _ = new OneCycleLR(new Adagrad([Tensor.Zeros([1]).WithRequiresGrad()]), 1.0, 10, new OneCycleLROptions { CycleMomentum = false });
        Assert.Contains("2 values", Assert.Throws<ArgumentException>(() =>
            new OneCycleLR(new PlainGroups(new() { ["lr"] = 1, ["momentum"] = 0 }, new() { ["lr"] = 1, ["momentum"] = 0 }), [1.0, 2.0, 3.0], 10)).Message,
            StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new LambdaLR(new PlainGroups(new() { ["lr"] = 1 }, new() { ["lr"] = 1 }, new() { ["lr"] = 1 }), [e => 1.0, e => 2.0]));
    }

    [Fact]
    public void OneCycle_SteppingPastTheTotal_Throws()
    {
        var scheduler = new OneCycleLR(Sgd(), 1.0, totalSteps: 3);
        scheduler.Step();
        scheduler.Step();
        scheduler.Step();
        var e = Assert.Throws<InvalidOperationException>(scheduler.Step);
        Assert.Contains("Tried to step 5 times", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LambdaLR_UsesTheEpoch()
    {
        var sgd = Sgd(lr: 2);
        var scheduler = new LambdaLR(sgd, e => e + 1.0);
        Assert.Equal([2.0], scheduler.GetLastLr());
        scheduler.Step();
        Assert.Equal([4.0], scheduler.GetLastLr());
    }
}
