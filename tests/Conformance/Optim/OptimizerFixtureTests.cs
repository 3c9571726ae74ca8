using System.Globalization;
using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Optim;

/// <summary>
/// Every optimizer against torch 1.13 in several configurations: 20 steps on a small float64 model,
/// the loss of every step, the parameters after steps 1, 2, 3, 5, 10 and 20, and the optimizer
/// state after the last step agree to a max-norm relative error of 1e-12.
/// </summary>
public abstract class OptimizerFixtureTests
{
    /// <summary>Relative tolerance of the trajectories.</summary>
    public const double Tolerance = 1e-12;

    /// <summary>The device the model and the optimizer live on.</summary>
    protected abstract Device Device { get; }

    /// <summary>Builds an optimizer of torch's class name over the given groups, with the default options.</summary>
    public static Optimizer Create(string kind, IEnumerable<ParamGroup> groups) => kind switch
    {
        "SGD" => new Sgd(groups),
        "Adam" => new Adam(groups),
        "AdamW" => new AdamW(groups),
        "Adagrad" => new Adagrad(groups),
        "Adadelta" => new Adadelta(groups),
        "Adamax" => new Adamax(groups),
        "ASGD" => new Asgd(groups),
        "RMSprop" => new RmsProp(groups),
        "Rprop" => new Rprop(groups),
        "NAdam" => new NAdam(groups),
        "RAdam" => new RAdam(groups),
        _ => throw new ArgumentException($"Unknown optimizer '{kind}'.", nameof(kind)),
    };

    /// <summary>The case's parameter groups (one, or the fixture's split) with its options.</summary>
    public static List<ParamGroup> Groups(JsonElement c, Module model)
    {
        var named = model.NamedParameters().ToDictionary(p => p.Name, p => p.Value);
        var options = OptimFixture.Numbers(c.GetProperty("options"));
        if (!c.TryGetProperty("groups", out var groups))
        {
            return [new ParamGroup(named.Values, options)];
        }
        var result = new List<ParamGroup>();
        foreach (var g in groups.EnumerateArray())
        {
            var merged = new Dictionary<string, double>(options);
            foreach (var (k, v) in OptimFixture.Numbers(g.GetProperty("options")))
            {
                merged[k] = v;
            }
            result.Add(new ParamGroup(g.GetProperty("params").EnumerateArray().Select(n => named[n.GetString()!]), merged));
        }
        return result;
    }

    public static TheoryData<string> Cases => OptimFixture.OptimizerCases;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Trajectory_MatchesTorch(string name)
    {
        var c = OptimFixture.Optimizer(name);
        var model = OptimFixture.Model(Device);
        var optimizer = Create(c.GetProperty("optimizer").GetString()!, Groups(c, model));
        var losses = c.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var trajectory = c.GetProperty("trajectory");
        int steps = OptimFixture.Root.GetProperty("steps").GetInt32();
        var agreement = new Agreement(Tolerance);
        for (int step = 1; step <= steps; step++)
        {
            optimizer.ZeroGrad();
            var loss = OptimFixture.Loss(model, Device);
            agreement.Check([losses[step - 1]], [loss.Item()], $"{name}: loss before step {step}");
            loss.Backward();
            optimizer.Step();
            if (trajectory.TryGetProperty(step.ToString(CultureInfo.InvariantCulture), out var expected))
            {
                foreach (var (pname, p) in model.NamedParameters())
                {
                    var e = FixtureArray.Parse(expected.GetProperty(pname));
                    agreement.Check(e.Values, p.ToDoubleArray(), $"{name}: {pname} after step {step}");
                }
            }
        }
        agreement.Report($"{name}: losses and parameters");
        AssertFinalState(c, model, optimizer, steps);
    }

    /// <summary>
    /// Compares each kind of state (exp_avg, momentum_buffer, ...) over the whole model: the
    /// max-norm relative error of the concatenated state vector. Per tensor would put a momentum
    /// buffer that has nearly cancelled out (|b| ~ 1e-4 after 20 steps of a converging run) against
    /// the round-off of gradients of order 1.
    /// </summary>
    private static void AssertFinalState(JsonElement c, Module model, Optimizer optimizer, int steps)
    {
        string name = c.GetProperty("name").GetString()!;
        var finalState = c.GetProperty("final_state");
        var expected = new Dictionary<string, List<double>>();
        var actual = new Dictionary<string, List<double>>();
        foreach (var (pname, p) in model.NamedParameters())
        {
            var expectedState = finalState.GetProperty(pname);
            var state = optimizer.State[p];
            Assert.Equal(steps, state.Step);
            var keys = expectedState.EnumerateObject().Select(e => e.Name).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(keys, state.Tensors.Keys.Order(StringComparer.Ordinal).ToArray());
            foreach (var key in keys)
            {
                var e = FixtureArray.Parse(expectedState.GetProperty(key));
                Assert.True(e.Shape.AsSpan().SequenceEqual(state[key].Shape.Dims), $"{name}: state {key} of {pname} has shape {state[key].Shape}, expected {new Shape(e.Shape)}.");
                (expected.TryGetValue(key, out var ev) ? ev : expected[key] = []).AddRange(e.Values);
                (actual.TryGetValue(key, out var av) ? av : actual[key] = []).AddRange(state[key].ToDoubleArray());
            }
        }
        var agreement = new Agreement(Tolerance);
        foreach (var (key, values) in expected)
        {
            agreement.Check(values.ToArray(), actual[key].ToArray(), $"{name}: state {key} after step {steps}");
        }
        agreement.Report($"{name}: final state");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StateDict_RoundTrip_ContinuesTheTrajectory(string name)
    {
        // Ten steps, a snapshot loaded into a fresh optimizer over a copy of the model, ten more
        // steps: the copy ends where torch's 20-step run does.
        var c = OptimFixture.Optimizer(name);
        string kind = c.GetProperty("optimizer").GetString()!;
        var model = OptimFixture.Model(Device);
        var optimizer = Create(kind, Groups(c, model));
        for (int step = 0; step < 10; step++)
        {
            optimizer.ZeroGrad();
            OptimFixture.Loss(model, Device).Backward();
            optimizer.Step();
        }
        var snapshot = optimizer.StateDict();
        var copy = OptimFixture.Model(Device);
        copy.LoadStateDict(model.StateDict());
        var resumed = Create(kind, Groups(c, copy));
        resumed.LoadStateDict(snapshot);
        for (int step = 10; step < 20; step++)
        {
            resumed.ZeroGrad();
            OptimFixture.Loss(copy, Device).Backward();
            resumed.Step();
        }
        var expected = c.GetProperty("trajectory").GetProperty("20");
        foreach (var (pname, p) in copy.NamedParameters())
        {
            Numeric.AssertClose(FixtureArray.Parse(expected.GetProperty(pname)).Values, p.ToDoubleArray(), Tolerance, $"{name}: resumed {pname} after step 20");
        }
    }
}

/// <summary>The optimizer fixtures on the managed CPU backend.</summary>
public sealed class OptimizerFixtureTestsOnReference : OptimizerFixtureTests
{
    protected override Device Device => Device.Cpu;
}
