using System.Text.Json;
using Higher.Optim;
using Higher.Optim.Schedulers;

namespace Higher.Conformance.Optim;

/// <summary>
/// Learning-rate schedulers against torch 1.13: two parameter groups (lr 0.1 and 0.05), the lr of
/// each group after construction and after every step, and the cycled momentum (SGD) or β1 (Adam)
/// of OneCycleLR, to a relative error of 1e-12.
/// </summary>
public sealed class SchedulerFixtureTests
{
    private const double Tolerance = 1e-12;

    public static TheoryData<string> Cases => OptimFixture.SchedulerCases;

    private static Optimizer TwoGroups(string kind)
    {
        var groups = new[]
        {
            new ParamGroup([Tensor.Zeros([2], DType.Float64).WithRequiresGrad()], new Dictionary<string, double> { ["lr"] = 0.1 }),
            new ParamGroup([Tensor.Zeros([3], DType.Float64).WithRequiresGrad()], new Dictionary<string, double> { ["lr"] = 0.05 }),
        };
        return kind == "SGD" ? new Sgd(groups, new SgdOptions { Lr = 0.1, Momentum = 0.9 }) : new Adam(groups, new AdamOptions { Lr = 0.1 });
    }

    /// <summary>The C# equivalent of each fixture's torch scheduler.</summary>
    private static LRScheduler Create(string name, Optimizer o) => name switch
    {
        "step" => new StepLR(o, stepSize: 3, gamma: 0.5),
        "multistep" => new MultiStepLR(o, [2, 5, 5, 9], gamma: 0.3),
        "exponential" => new ExponentialLR(o, gamma: 0.9),
        "cosine" => new CosineAnnealingLR(o, tMax: 7, etaMin: 0.001),
        "cosine_zero_min" => new CosineAnnealingLR(o, tMax: 5),
        "lambda" => new LambdaLR(o, [e => Math.Pow(0.95, e), e => 1.0 / (e + 1)]),
        "onecycle_cos" => new OneCycleLR(o, [1.0, 0.5], totalSteps: 30),
        "onecycle_linear_three_phase" => new OneCycleLR(o, 0.8, totalSteps: 40, new OneCycleLROptions
        {
            PctStart = 0.25, AnnealStrategy = AnnealStrategy.Linear, ThreePhase = true, DivFactor = 10, FinalDivFactor = 100,
        }),
        "onecycle_adam" => new OneCycleLR(o, [0.01, 0.02], totalSteps: 20, new OneCycleLROptions { BaseMomentum = 0.8, MaxMomentum = 0.9 }),
        "onecycle_no_momentum" => new OneCycleLR(o, 0.3, totalSteps: 15, new OneCycleLROptions { CycleMomentum = false, PctStart = 0.4 }),
        _ => throw new ArgumentException($"Unknown scheduler case '{name}'.", nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LearningRates_MatchTorch(string name)
    {
        var c = OptimFixture.Scheduler(name);
        string kind = c.GetProperty("optimizer").GetString()!;
        var optimizer = TwoGroups(kind);
        var scheduler = Create(name, optimizer);
        var lrs = Rows(c.GetProperty("lrs"));
        var momenta = c.TryGetProperty("momenta", out var m) ? Rows(m) : null;
        string momentumKey = kind == "SGD" ? "momentum" : "beta1";
        var agreement = new Agreement(Tolerance);
        for (int step = 0; step < lrs.Length; step++)
        {
            if (step > 0)
            {
                optimizer.Step();
                scheduler.Step();
            }
            Assert.Equal(step, scheduler.LastEpoch);
            agreement.Check(lrs[step], scheduler.GetLastLr().ToArray(), $"{name}: lr at epoch {step}");
            agreement.Check(lrs[step], optimizer.ParamGroups.Select(g => g["lr"]).ToArray(), $"{name}: group lr at epoch {step}");
            if (momenta is not null)
            {
                agreement.Check(momenta[step], optimizer.ParamGroups.Select(g => g[momentumKey]).ToArray(), $"{name}: {momentumKey} at epoch {step}");
            }
        }
        agreement.Report(name);
    }

    private static double[][] Rows(JsonElement e) =>
        e.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
}
