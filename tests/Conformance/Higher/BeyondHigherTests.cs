using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Optim.Schedulers;

namespace Higher.Conformance.Higher;

/// <summary>
/// What Higher adds to higher (HIGHER-SEMANTICS.md §3), each against a hand computation: first-order
/// MAML with copyInitialWeights false, truncated backpropagation, optimizer state carried across
/// contexts, learning-rate schedules inside the inner loop, a bounded fast-weight history, two
/// functional views of one model on two threads, BatchNorm buffers owned by the view, assigning a
/// submodule's fast weight, direct submodule calls, the registry, override validation and the utilities.
/// </summary>
public sealed class BeyondHigherTests
{
    private const double Lr = 0.1;

    private static Tensor Mse(Tensor a, Tensor b) => F.MseLoss(a, b);

    private static List<Tensor> LeafCopies(IEnumerable<Tensor> ts) => ts.Select(t => t.Detach().Clone().WithRequiresGrad()).ToList();

    private sealed record Batch(Tensor XSupport, Tensor YSupport, Tensor XQuery, Tensor YQuery);

    private static Batch[] Tasks(Generator g, int count) => Enumerable.Range(0, count)
        .Select(_ => new Batch(TestModels.Rand(g, 6, 4), TestModels.Rand(g, 6, 2), TestModels.Rand(g, 6, 4), TestModels.Rand(g, 6, 2))).ToArray();

    /// <summary>
    /// FOMAML with copyInitialWeights false (higher #63, #129): the model's Grad is the sum over tasks
    /// of the query gradient at the adapted weights, which a plain optimizer on a copy of the model
    /// computes by hand. The second-order meta-gradient differs.
    /// </summary>
    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    public void FirstOrder_ModelGradIsSumOfQueryGradientsAtAdaptedWeights(string optimizer)
    {
        var tasks = Tasks(new Generator(40), 3);
        var model = TestModels.Simple(new Generator(41));
        var inner = Optimizers.Create(optimizer, model.Parameters(), new Dictionary<string, double> { ["lr"] = Lr });
        foreach (var t in tasks)
        {
            using var ctx = InnerLoop.Create(model, inner, copyInitialWeights: false, firstOrder: true);
            var (fmodel, diffopt) = ctx;
            for (int s = 0; s < 2; s++)
            {
                diffopt.Step(Mse(fmodel.Forward(t.XSupport), t.YSupport));
            }
            Mse(fmodel.Forward(t.XQuery), t.YQuery).Backward();
        }
        var fomaml = model.Parameters().Select(p => p.Grad!).ToList();

        var perTask = new List<Tensor?[]>();
        foreach (var t in tasks)
        {
            var copy = TestModels.Simple(new Generator(41));
            var opt = Optimizers.Create(optimizer, copy.Parameters(), new Dictionary<string, double> { ["lr"] = Lr });
            for (int s = 0; s < 2; s++)
            {
                opt.ZeroGrad();
                Mse(copy.Forward(t.XSupport), t.YSupport).Backward();
                opt.Step();
            }
            perTask.Add(Autograd.Grad([Mse(copy.Forward(t.XQuery), t.YQuery)], copy.Parameters().ToList()));
        }
        var expected = Enumerable.Range(0, fomaml.Count).Select(i => perTask.Select(grads => grads[i]!).Aggregate((a, b) => a + b)).ToList();
        Check.Close(expected, fomaml, 1e-12, $"{optimizer}: FOMAML model Grad vs hand computation");

        // Full MAML (second order) on one task gives another meta-gradient than FOMAML on it.
        model.ZeroGrad();
        using (var ctx = InnerLoop.Create(model, inner, copyInitialWeights: false))
        {
            var (fmodel, diffopt) = ctx;
            var t = tasks[0];
            diffopt.Step(Mse(fmodel.Forward(t.XSupport), t.YSupport));
            diffopt.Step(Mse(fmodel.Forward(t.XSupport), t.YSupport));
            Mse(fmodel.Forward(t.XQuery), t.YQuery).Backward();
        }
        double difference = model.Parameters().Select((p, i) => Check.Error(perTask[0][i]!, p.Grad!)).Max();
        Assert.True(difference > 1e-6, "second-order MAML should differ from FOMAML");
    }

    /// <summary>
    /// Hand computation for the truncation tests: two plain SGD-momentum steps (nothing recorded), a
    /// cut, then <paramref name="graphSteps"/> steps written out with a tensor learning rate; returns
    /// the gradient of the query loss w.r.t. the weights at the cut and the learning rate.
    /// </summary>
    private static (Tensor?[] AtCut, Tensor? Lr) TruncatedByHand(Batch[] batches, int graphSteps, double lrValue, double momentum)
    {
        var model = TestModels.Simple(new Generator(42));
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = lrValue, Momentum = momentum });
        for (int s = 0; s < 2; s++)
        {
            opt.ZeroGrad();
            Mse(model.Forward(batches[s].XSupport), batches[s].YSupport).Backward();
            opt.Step();
        }
        var cut = LeafCopies(model.Parameters());
        var buffers = model.Parameters().Select(p => opt.State[p]["momentum_buffer"].Detach()).ToArray();
        var lr = Tensor.Scalar(lrValue, DType.Float64).WithRequiresGrad();
        var fmodel = Patch.Monkeypatch(model);
        fmodel.FastParams = cut;
        for (int s = 2; s < 2 + graphSteps; s++)
        {
            var current = fmodel.FastParams;
            var grads = Autograd.Grad([Mse(fmodel.Forward(batches[s].XSupport), batches[s].YSupport)], current, createGraph: true);
            var next = new Tensor[current.Count];
            for (int i = 0; i < next.Length; i++)
            {
                buffers[i] = momentum * buffers[i] + grads[i]!;
                next[i] = current[i] - lr * buffers[i];
            }
            fmodel.FastParams = next;
        }
        var last = batches[2 + graphSteps - 1];
        var query = Mse(fmodel.Forward(last.XQuery), last.YQuery);
        var g = Autograd.Grad([query], [.. cut, lr]);
        return (g[..cut.Count], g[^1]);
    }

    /// <summary>
    /// TruncateEvery 2 with 3 steps: after step 2 the fast weights and the momentum buffers are cut,
    /// so the query gradient reaches the weights at the cut (time 2) and the learning rate through
    /// step 3 only, exactly as by hand; nothing reaches time 0.
    /// </summary>
    [Fact]
    public void TruncateEvery_MetaGradientEqualsHandComputationWithTheCut()
    {
        var batches = Tasks(new Generator(43), 3);
        var (handAtCut, handLr) = TruncatedByHand(batches, graphSteps: 1, Lr, 0.9);

        var model = TestModels.Simple(new Generator(42));
        var lr = Tensor.Scalar(Lr, DType.Float64).WithRequiresGrad();
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr, Momentum = 0.9 }), @override: new Override().Set("lr", lr), truncateEvery: 2);
        var (fmodel, diffopt) = ctx;
        for (int s = 0; s < 3; s++)
        {
            diffopt.Step(Mse(fmodel.Forward(batches[s].XSupport), batches[s].YSupport));
        }
        Assert.All(fmodel.Parameters(2), p => Assert.True(p.IsLeaf && p.RequiresGrad, "the weights at the cut are leaves"));
        var query = Mse(fmodel.Forward(batches[2].XQuery), batches[2].YQuery);
        int n = fmodel.Parameters(0).Count;
        var g = Autograd.Grad([query], [.. fmodel.Parameters(0), .. fmodel.Parameters(2), lr], allowUnused: true);
        Assert.All(g[..n], grad => Assert.Null(grad));
        Check.Close(handAtCut.Select(t => t!).ToList(), g[n..^1], 1e-12, "gradient at the cut");
        Check.Close(handLr!, g[^1], 1e-12, "gradient w.r.t. lr");
    }

    /// <summary>Truncate() on demand after step 2 of 4: the meta-gradient flows through steps 3 and 4 only, as by hand.</summary>
    [Fact]
    public void Truncate_OnDemand_MetaGradientEqualsHandComputationWithTheCut()
    {
        var batches = Tasks(new Generator(44), 4);
        var (handAtCut, handLr) = TruncatedByHand(batches, graphSteps: 2, Lr, 0.9);

        var model = TestModels.Simple(new Generator(42));
        var lr = Tensor.Scalar(Lr, DType.Float64).WithRequiresGrad();
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr, Momentum = 0.9 }), @override: new Override().Set("lr", lr));
        var (fmodel, diffopt) = ctx;
        IReadOnlyList<Tensor>? cut = null;
        for (int s = 0; s < 4; s++)
        {
            diffopt.Step(Mse(fmodel.Forward(batches[s].XSupport), batches[s].YSupport));
            if (s == 1)
            {
                diffopt.Truncate();
                cut = fmodel.FastParams;
            }
        }
        var query = Mse(fmodel.Forward(batches[3].XQuery), batches[3].YQuery);
        int n = fmodel.Parameters(0).Count;
        var g = Autograd.Grad([query], [.. fmodel.Parameters(0), .. cut!, lr], allowUnused: true);
        Assert.All(g[..n], grad => Assert.Null(grad));
        Check.Close(handAtCut.Select(t => t!).ToList(), g[n..^1], 1e-12, "gradient at the cut");
        Check.Close(handLr!, g[^1], 1e-12, "gradient w.r.t. lr");

        // Without the cut the learning rate also acts through steps 1 and 2.
        var model2 = TestModels.Simple(new Generator(42));
        var lr2 = Tensor.Scalar(Lr, DType.Float64).WithRequiresGrad();
        using var full = InnerLoop.Create(model2, new Sgd(model2.Parameters(), new SgdOptions { Lr = Lr, Momentum = 0.9 }), @override: new Override().Set("lr", lr2));
        for (int s = 0; s < 4; s++)
        {
            full.DiffOpt.Step(Mse(full.FModel.Forward(batches[s].XSupport), batches[s].YSupport));
        }
        var fullLr = Autograd.Grad(Mse(full.FModel.Forward(batches[3].XQuery), batches[3].YQuery), lr2);
        Assert.True(Check.Error(fullLr, g[^1]!) > 1e-6, "the cut should change the lr gradient");
    }

    /// <summary>
    /// Carrying the state (higher #9, #53): 3 Adam steps, CopyStateTo, the weights written back, a
    /// new context, 3 more steps equals 6 uninterrupted steps; without the state it does not.
    /// </summary>
    [Theory]
    [InlineData("adam")]
    [InlineData("rmsprop")]
    [InlineData("asgd")]
    public void CopyStateTo_NewContextContinuesTheTrajectory(string optimizer)
    {
        var batches = Tasks(new Generator(45), 6);
        var options = new Dictionary<string, double> { ["lr"] = Lr, ["momentum"] = 0.5 };
        if (optimizer != "rmsprop")
        {
            options.Remove("momentum");
        }

        var reference = TestModels.Simple(new Generator(46));
        IReadOnlyList<Tensor> uninterrupted;
        using (var ctx = InnerLoop.Create(reference, Optimizers.Create(optimizer, reference.Parameters(), options)))
        {
            foreach (var b in batches)
            {
                ctx.DiffOpt.Step(Mse(ctx.FModel.Forward(b.XSupport), b.YSupport));
            }
            uninterrupted = ctx.FModel.Parameters();
        }

        foreach (bool carry in new[] { true, false })
        {
            var model = TestModels.Simple(new Generator(46));
            var opt = Optimizers.Create(optimizer, model.Parameters(), options);
            for (int part = 0; part < 2; part++)
            {
                using var ctx = InnerLoop.Create(model, opt);
                for (int s = 3 * part; s < 3 * part + 3; s++)
                {
                    ctx.DiffOpt.Step(Mse(ctx.FModel.Forward(batches[s].XSupport), batches[s].YSupport));
                }
                if (carry)
                {
                    ctx.DiffOpt.CopyStateTo(opt, model.Parameters());
                    Assert.All(model.Parameters(), p => Assert.Equal((long)(3 * (part + 1)), opt.State[p].Step));
                }
                using var _ = Autograd.NoGrad();
                foreach (var (p, fast) in model.Parameters().Zip(ctx.FModel.Parameters()))
                {
                    p.CopyFrom(fast);
                }
            }
            if (carry)
            {
                Check.Close(uninterrupted, model.Parameters().ToList(), 1e-14, $"{optimizer}: carried state");
            }
            else
            {
                Assert.False(Check.Equal(uninterrupted[0], model.Parameters()[0]), $"{optimizer}: without the state the trajectory should differ");
            }
        }
    }

    /// <summary>
    /// A learning-rate schedule inside the inner loop (higher #73): writing ParamGroups[i]["lr"]
    /// between steps changes each update exactly as by hand (p ← p - lr_k·g_k), per group; a StepLR
    /// scheduler can drive the same dictionaries; the wrapped optimizer keeps its own lr; an override
    /// takes precedence over the group value.
    /// </summary>
    [Fact]
    public void LrSchedule_InsideTheInnerLoop_ChangesUpdatesAsExpected()
    {
        var batches = Tasks(new Generator(47), 3);
        double[] schedule = [0.2, 0.1, 0.05];
        var model = TestModels.Simple(new Generator(48));
        var all = model.Parameters().ToList();
        var opt = new Sgd([new ParamGroup(all.Take(3)), new ParamGroup(all.Skip(3))], new SgdOptions { Lr = 1 });
        using var ctx = InnerLoop.Create(model, opt);
        var (fmodel, diffopt) = ctx;
        var scheduled = Patch.Monkeypatch(model);
        var scheduledOpt = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = scheduled });
        var scheduler = new StepLR(scheduledOpt, stepSize: 1, gamma: 0.5);
        var expected = LeafCopies(model.Parameters());
        for (int k = 0; k < 3; k++)
        {
            diffopt.ParamGroups[0]["lr"] = schedule[k];
            diffopt.ParamGroups[1]["lr"] = schedule[k] / 10;
            var loss = Mse(fmodel.Forward(batches[k].XSupport), batches[k].YSupport);
            var grads = Autograd.Grad([Mse(TestModelsApply(model, expected, batches[k].XSupport), batches[k].YSupport)], expected);
            expected = expected.Select((p, i) => (p - (i < 3 ? schedule[k] : schedule[k] / 10) * grads[i]!).Detach().WithRequiresGrad()).ToList();
            diffopt.Step(loss);
            Check.Close(expected, fmodel.Parameters(), 1e-14, $"step {k}");

            Assert.Equal(Math.Pow(0.5, k), scheduledOpt.ParamGroups[0]["lr"]);
            scheduledOpt.Step(Mse(scheduled.Forward(batches[k].XSupport), batches[k].YSupport));
            scheduler.Step();
        }
        Assert.Equal(1, opt.ParamGroups[0]["lr"]);
        Assert.Equal(1, opt.ParamGroups[1]["lr"]);

        // An override wins over the group's number.
        var fm = Patch.Monkeypatch(model);
        var over = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = fm, Override = new Override().Set("lr", 0.0) });
        over.ParamGroups[0]["lr"] = 5;
        over.Step(Mse(fm.Forward(batches[0].XSupport), batches[0].YSupport));
        Check.Same(model.Parameters().ToList(), fm.Parameters(), "lr overridden to 0");
    }

    private static Tensor TestModelsApply(Module model, IReadOnlyList<Tensor> weights, Tensor x)
    {
        var fmodel = Patch.Monkeypatch(model);
        return fmodel.Forward(x, weights);
    }

    /// <summary>
    /// MaxHistory bounds the fast-weight history (higher #6, #138): a dropped time throws with a
    /// message that says so; time 0 and recent times stay; the meta-gradient is unchanged.
    /// </summary>
    [Fact]
    public void MaxHistory_DropsOldTimes_WithAClearMessage()
    {
        var batches = Tasks(new Generator(49), 6);
        var results = new List<Tensor?[]>();
        foreach (int? max in new int?[] { null, 2 })
        {
            var model = TestModels.Simple(new Generator(50));
            using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr }));
            var (fmodel, diffopt) = ctx;
            fmodel.MaxHistory = max;
            foreach (var b in batches)
            {
                diffopt.Step(Mse(fmodel.Forward(b.XSupport), b.YSupport));
            }
            Assert.Equal(7, fmodel.HistoryLength);
            Assert.Same(fmodel.Parameters(6), fmodel.Parameters(-1));
            _ = fmodel.Parameters(5);
            if (max is not null)
            {
                var ex = Assert.Throws<ArgumentOutOfRangeException>(() => fmodel.Parameters(3));
                Assert.Contains("dropped", ex.Message, StringComparison.Ordinal);
                Assert.Contains("MaxHistory = 2", ex.Message, StringComparison.Ordinal);
                Assert.Throws<ArgumentOutOfRangeException>(() => fmodel.Parameters(-4));
            }
            else
            {
                _ = fmodel.Parameters(3);
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => fmodel.Parameters(7));
            var query = Mse(fmodel.Forward(batches[0].XQuery), batches[0].YQuery);
            results.Add(Autograd.Grad([query], fmodel.Parameters(0)).Select(t => ctx.Keep(t!)).ToArray());
        }
        Check.Same(results[0].Select(t => t!).ToList(), results[1], "meta-gradient with and without MaxHistory");
    }

    /// <summary>
    /// Two functional views of one BatchNorm model, adapted on two threads in lock step (a barrier
    /// after every step), give bitwise the results of sequential runs: fast weights, buffers and
    /// meta-gradients. The model itself is untouched.
    /// </summary>
    [Fact]
    public void TwoFunctionalModels_OnTwoThreads_MatchSequentialRuns()
    {
        var model = TestModels.BatchNormMlp(new Generator(51));
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = Lr });
        var tasks = Tasks(new Generator(52), 2);
        var before = model.StateDict();

        (IReadOnlyList<Tensor> Weights, Tensor[] Buffers, Tensor?[] Meta) Run(Batch t, Barrier? barrier)
        {
            using var ctx = InnerLoop.Create(model, opt);
            var (fmodel, diffopt) = ctx;
            for (int s = 0; s < 5; s++)
            {
                diffopt.Step(Mse(fmodel.Forward(t.XSupport), t.YSupport));
                barrier?.SignalAndWait();
            }
            var meta = Autograd.Grad([Mse(fmodel.Forward(t.XQuery), t.YQuery)], fmodel.Parameters(0)).Select(g => ctx.Keep(g!)).ToArray();
            return (fmodel.Parameters(), fmodel.Buffers().Select(b => b.Value!).ToArray(), meta);
        }

        var sequential = tasks.Select(t => Run(t, null)).ToArray();
        using var barrier = new Barrier(2);
        var results = new (IReadOnlyList<Tensor> Weights, Tensor[] Buffers, Tensor?[] Meta)[2];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => results[i] = Run(tasks[i], barrier))).ToArray();
        foreach (var th in threads)
        {
            th.Start();
        }
        foreach (var th in threads)
        {
            th.Join();
        }
        for (int i = 0; i < 2; i++)
        {
            Check.Same(sequential[i].Weights, results[i].Weights, $"task {i}: fast weights");
            Check.Same(sequential[i].Buffers, results[i].Buffers, $"task {i}: buffers");
            Check.Same(sequential[i].Meta.Select(t => t!).ToList(), results[i].Meta, $"task {i}: meta-gradient");
        }
        Assert.False(Check.Equal(results[0].Weights[0], results[1].Weights[0]), "the two tasks should adapt differently");
        foreach (var (name, value) in model.StateDict())
        {
            Check.Same(before[name], value, $"model {name}");
        }
    }

    /// <summary>
    /// BatchNorm running statistics are updated in the functional copy, never in the original;
    /// BufferSync copies the module's again; in evaluation mode the view uses its own statistics.
    /// </summary>
    [Fact]
    public void BatchNormBuffers_UpdateInTheFunctionalCopyOnly()
    {
        var g = new Generator(53);
        var model = TestModels.BatchNormMlp(g);
        var original = model.NamedBuffers().ToDictionary(b => b.Name, b => b.Value.Clone());
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr }));
        var (fmodel, diffopt) = ctx;
        for (int s = 0; s < 4; s++)
        {
            diffopt.Step(fmodel.Forward(TestModels.Rand(g, 8, 4)).Square().Sum());
        }
        foreach (var (name, value) in model.NamedBuffers())
        {
            Check.Same(original[name], value, $"model buffer {name}");
        }
        var buffers = fmodel.Buffers().ToDictionary(b => b.Name, b => b.Value!);
        Assert.Equal(original.Keys.Order(StringComparer.Ordinal), buffers.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(4, buffers["2.num_batches_tracked"].Item());
        Assert.False(Check.Equal(original["2.running_mean"], buffers["2.running_mean"]), "the view's running mean should move");

        // Evaluation mode: with the module's weights the view normalizes with its own statistics;
        // after BufferSync, with the module's.
        var x = TestModels.Rand(g, 8, 4);
        var moduleWeights = model.Parameters().ToList();
        model.Eval();
        using (Autograd.NoGrad())
        {
            var moduleOut = model.Forward(x);
            Assert.False(Check.Equal(moduleOut, fmodel.Call(m => m.Forward(x), moduleWeights)));
            Patch.BufferSync(model, fmodel);
            Check.Same(moduleOut, fmodel.Call(m => m.Forward(x), moduleWeights), "after BufferSync");
        }
        model.Train();
        Assert.Equal(0, fmodel.Buffers().Single(b => b.Name == "2.num_batches_tracked").Value!.Item());
    }

    /// <summary>
    /// SetFastWeight of a submodule's weight (a higher bug): the forward uses it, the gradient
    /// reaches it, the history grows by one, the module is unchanged; unknown names list the known ones.
    /// </summary>
    [Fact]
    public void SetFastWeight_OfASubmodule_IsUsedByForward()
    {
        var g = new Generator(54);
        var model = TestModels.Simple(g);
        var fmodel = Patch.Monkeypatch(model);
        var w = Tensor.Randn([3, 4], DType.Float64, g).WithRequiresGrad();
        fmodel.SetFastWeight("0.weight", w);
        Assert.Equal(2, fmodel.HistoryLength);
        Assert.Same(w, fmodel.FastWeight("0.weight"));
        Assert.Same(fmodel.Parameters(0)[1], fmodel.FastWeight("0.bias"));
        var x = TestModels.Rand(g, 5, 4);
        var p = fmodel.Parameters();
        var expected = Tensor.Linear(Tensor.Linear(Tensor.Linear(x, w, p[1]).Relu(), p[2]).Sigmoid(), p[3], p[4]);
        var output = fmodel.Forward(x);
        Check.Same(expected, output, "forward with the assigned weight");
        Assert.NotNull(Autograd.Grad(output.Sum(), w));
        Assert.False(Check.Equal(w, model.Parameters()[0]));
        Assert.Same(fmodel.InitFastParams, fmodel.Parameters(0));

        // Weights given to Forward become the latest fast weights (higher's forward(x, params=...)).
        var given = model.Parameters().Select(t => t * 2).ToList();
        var doubled = fmodel.Forward(x, given);
        Assert.Equal(3, fmodel.HistoryLength);
        Assert.Same(given[4], fmodel.FastParams[4]);
        Check.Same(doubled, fmodel.Forward(x), "forward with the given weights, then without");

        var ex = Assert.Throws<ArgumentException>(() => fmodel.SetFastWeight("0.wieght", w));
        Assert.Contains("0.weight", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => fmodel.SetFastWeight("0.weight", Tensor.Zeros([4, 3], DType.Float64)));
    }

    /// <summary>Direct submodule calls through Call see the current fast weights after a step, not the stale initial ones (a higher bug).</summary>
    [Fact]
    public void DirectSubmoduleCall_SeesCurrentFastWeights()
    {
        var g = new Generator(55);
        var model = TestModels.Simple(g);
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr }));
        var (fmodel, diffopt) = ctx;
        diffopt.Step(fmodel.Forward(TestModels.Rand(g, 8, 4)).Square().Sum());
        var x = TestModels.Rand(g, 5, 4);
        var direct = fmodel.Call(m => ((Sequential)m)[0].Forward(x));
        Check.Same(Tensor.Linear(x, fmodel.FastWeight("0.weight"), fmodel.FastWeight("0.bias")), direct, "direct call");
        Assert.False(Check.Equal(direct, ((Sequential)model)[0].Forward(x)), "the call should not use the initial weights");
        Assert.NotNull(Autograd.Grad([direct.Sum()], fmodel.Parameters(0).Take(2).ToList())[0]);
    }

    /// <summary>Every optimizer resolves to its own differentiable subclass (higher's DifferentiableSGD, ...); a device given to InnerLoop.Create changes nothing on the CPU.</summary>
    [Theory]
    [InlineData("sgd", typeof(DifferentiableSgd))]
    [InlineData("adam", typeof(DifferentiableAdam))]
    [InlineData("adamw", typeof(DifferentiableAdamW))]
    [InlineData("adagrad", typeof(DifferentiableAdagrad))]
    [InlineData("adadelta", typeof(DifferentiableAdadelta))]
    [InlineData("adamax", typeof(DifferentiableAdamax))]
    [InlineData("asgd", typeof(DifferentiableAsgd))]
    [InlineData("rmsprop", typeof(DifferentiableRmsProp))]
    [InlineData("rprop", typeof(DifferentiableRprop))]
    [InlineData("nadam", typeof(DifferentiableNAdam))]
    [InlineData("radam", typeof(DifferentiableRAdam))]
    public void Registry_EveryOptimizerHasItsDifferentiableType(string optimizer, Type expected)
    {
        var batches = Tasks(new Generator(65), 2);
        var results = new List<IReadOnlyList<Tensor>>();
        foreach (var device in new Device?[] { null, Device.Cpu })
        {
            var model = TestModels.Simple(new Generator(66));
            using var ctx = InnerLoop.Create(model, Optimizers.Create(optimizer, model.Parameters(), new Dictionary<string, double> { ["lr"] = Lr }), device: device);
            Assert.IsType(expected, ctx.DiffOpt);
            foreach (var b in batches)
            {
                ctx.DiffOpt.Step(Mse(ctx.FModel.Forward(b.XSupport), b.YSupport));
            }
            results.Add(ctx.FModel.Parameters());
        }
        Check.Same(results[0], results[1], $"{optimizer}: device Cpu vs none");
    }

    /// <summary>A user's subclass of a registered optimizer type.</summary>
    private sealed class MyAdam(IEnumerable<Tensor> parameters) : Adam(parameters, new AdamOptions { Lr = Lr });

    /// <summary>A user's optimizer nobody registers: p ← p - lr·sign(g).</summary>
    private sealed class UnregisteredSignSgd(IEnumerable<Tensor> parameters) : Optimizer([new ParamGroup(parameters)], new Dictionary<string, double> { ["lr"] = Lr })
    {
        public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
        {
            state.Step++;
            return param - hyper["lr"] * grad.Sign();
        }
    }

    /// <summary>A user's optimizer this test registers (a separate type, so the registry's global state cannot leak into the test above).</summary>
    private sealed class RegisteredSignSgd(IEnumerable<Tensor> parameters) : Optimizer([new ParamGroup(parameters)], new Dictionary<string, double> { ["lr"] = Lr })
    {
        public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
        {
            state.Step++;
            return param - hyper["lr"] * grad.Sign();
        }
    }

    [Fact]
    public void Registry_SubclassOfRegisteredTypeResolves()
    {
        var g = new Generator(56);
        var batches = Tasks(g, 3);
        Assert.True(DiffOptim.IsRegistered(typeof(MyAdam)));
        var results = new List<IReadOnlyList<Tensor>>();
        foreach (bool mine in new[] { true, false })
        {
            var model = TestModels.Simple(new Generator(57));
            Optimizer opt = mine ? new MyAdam(model.Parameters()) : new Adam(model.Parameters(), new AdamOptions { Lr = Lr });
            using var ctx = InnerLoop.Create(model, opt);
            Assert.IsType<DifferentiableAdam>(ctx.DiffOpt);
            foreach (var b in batches)
            {
                ctx.DiffOpt.Step(Mse(ctx.FModel.Forward(b.XSupport), b.YSupport));
            }
            results.Add(ctx.FModel.Parameters());
        }
        Check.Same(results[1], results[0], "subclass vs Adam");
    }

    [Fact]
    public void Registry_UnregisteredOptimizerFailsWithHowToRegister()
    {
        var model = TestModels.Simple(new Generator(58));
        var opt = new UnregisteredSignSgd(model.Parameters());
        Assert.False(DiffOptim.IsRegistered(typeof(UnregisteredSignSgd)));
        var ex = Assert.Throws<NotSupportedException>(() => InnerLoop.Create(model, opt));
        Assert.Contains("UnregisteredSignSgd", ex.Message, StringComparison.Ordinal);
        Assert.Contains("DiffOptim.Register<UnregisteredSignSgd>", ex.Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => DiffOptim.Get(opt, model.Parameters()));
    }

    [Fact]
    public void Registry_RegisteringMakesInnerLoopCreateWork()
    {
        var g = new Generator(59);
        var model = TestModels.Simple(new Generator(60));
        var opt = new RegisteredSignSgd(model.Parameters());
        Assert.Throws<NotSupportedException>(() => InnerLoop.Create(model, opt));
        DiffOptim.Register<RegisteredSignSgd>((o, r, options) => new DifferentiableOptimizer(o, r, options));
        var lr = Tensor.Scalar(Lr, DType.Float64).WithRequiresGrad();
        using var ctx = InnerLoop.Create(model, opt, @override: new Override().Set("lr", lr));
        var (fmodel, diffopt) = ctx;
        var x = TestModels.Rand(g, 8, 4);
        var loss = fmodel.Forward(x).Square().Sum();
        var grads = Autograd.Grad([loss], fmodel.Parameters(), retainGraph: true);
        diffopt.Step(loss);
        var expected = fmodel.Parameters(0).Zip(grads, (p, grad) => p - Lr * grad!.Sign()).ToList();
        Check.Same(expected, fmodel.Parameters(), "sign-SGD step");
        Check.NonZero(Autograd.Grad(fmodel.Forward(x).Square().Sum(), lr), "meta-gradient w.r.t. lr");
    }

    /// <summary>
    /// DiffOptim.Create with parameter-group dictionaries (a higher bug): each group's own lr applies
    /// to its own fast weights, in whatever order the groups are given.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Create_WithParameterGroups_AppliesPerGroupLr(bool groupsInReverseOrder)
    {
        var g = new Generator(61);
        var model = TestModels.Simple(g);
        var fmodel = Patch.Monkeypatch(model);
        var fast = fmodel.FastParams;
        ParamGroup[] groups =
        [
            new ParamGroup(fast.Take(2), new Dictionary<string, double> { ["lr"] = 0.1 }),
            new ParamGroup(fast.Skip(2), new Dictionary<string, double> { ["lr"] = 0.01 }),
        ];
        var diffopt = DiffOptim.Create(gs => new Sgd(gs, new SgdOptions { Lr = 1 }), groupsInReverseOrder ? groups.Reverse() : groups,
            new DifferentiableOptimizerOptions { FModel = fmodel });
        Assert.IsType<DifferentiableSgd>(diffopt);
        var loss = fmodel.Forward(TestModels.Rand(g, 8, 4)).Square().Sum();
        var grads = Autograd.Grad([loss], fast, retainGraph: true);
        diffopt.Step(loss);
        var expected = fast.Select((p, i) => p - (i < 2 ? 0.1 : 0.01) * grads[i]!).ToList();
        Check.Same(expected, fmodel.Parameters(), "per-group lr");

        // Without groups the optimizer takes the functional module's fast weights as one group.
        var single = DiffOptim.Create(gs => new Sgd(gs, new SgdOptions { Lr = 0.5 }), options: new DifferentiableOptimizerOptions { FModel = fmodel });
        var before = fmodel.FastParams;
        var loss2 = fmodel.Forward(TestModels.Rand(g, 8, 4)).Square().Sum();
        var grads2 = Autograd.Grad([loss2], before, retainGraph: true);
        single.Step(loss2);
        Check.Same(before.Select((p, i) => p - 0.5 * grads2[i]!).ToList(), fmodel.Parameters(), "one group");
        Assert.Throws<ArgumentException>(() => DiffOptim.Create(gs => new Sgd(gs)));
    }

    /// <summary>Overrides need one value or one per group, at construction and per step; pairs need 2-element tensors.</summary>
    [Fact]
    public void Override_Validation()
    {
        var model = TestModels.Simple(new Generator(62));
        var all = model.Parameters().ToList();
        var opt = new Adam([new ParamGroup(all.Take(2)), new ParamGroup(all.Skip(2))], new AdamOptions { Lr = Lr });
        var three = new Override().Set("lr", 0.1, 0.2, 0.3);
        var ex = Assert.Throws<ArgumentException>(() => InnerLoop.Create(model, opt, @override: three));
        Assert.Contains("'lr' has 3 values", ex.Message, StringComparison.Ordinal);
        Assert.Contains("2 parameter groups", ex.Message, StringComparison.Ordinal);

        using var ctx = InnerLoop.Create(model, opt, @override: new Override().Set("lr", 0.1, 0.2));
        var (fmodel, diffopt) = ctx;
        var loss = fmodel.Forward(TestModels.Rand(new Generator(63), 8, 4)).Square().Sum();
        Assert.Throws<ArgumentException>(() => diffopt.Step(loss, @override: three));
        diffopt.Step(loss, @override: new Override().Set("beta1", 0.5));
        Assert.Equal(0.5, diffopt.Override["beta1"][0].Value);
        Assert.Equal(2, diffopt.Override["lr"].Count);

        Assert.Throws<ArgumentException>(() => new Override().Set("lr", Array.Empty<HyperValue>()));
        Assert.Throws<ArgumentException>(() => new Override().Set("betas", 0.9));
        Assert.Throws<ArgumentException>(() => new Override().Set("betas", Tensor.FromArray(new[] { 0.9, 0.99, 0.5 })));
        Assert.Throws<ArgumentException>(() => new Override().Set("lr", Tensor.FromArray(new[] { 0.9, 0.99 })));
        var pair = new Override().Set("betas", Tensor.FromArray(new[] { 0.8, 0.9 }), Tensor.FromArray(new[] { 0.7, 0.6 }));
        Assert.Equal(new[] { 0.8, 0.7 }, pair["beta1"].Select(v => v.Value));
        Assert.Equal(new[] { 0.9, 0.6 }, pair["beta2"].Select(v => v.Value));

        // A misspelt name is an error that lists the real ones, not a silent no-op.
        var typo = Assert.Throws<ArgumentException>(() => InnerLoop.Create(model, opt, @override: new Override().Set("lrr", 0.1)));
        Assert.Contains("'lrr'", typo.Message, StringComparison.Ordinal);
        Assert.Contains("lr", typo.Message.Replace("'lrr'", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => diffopt.Step(loss, @override: new Override().Set("momentum", 0.9)));
    }

    [Fact]
    public void Utils_Flatten_ReturnsTheLeavesInOrder()
    {
        object?[] nested = [1, new List<object?> { "ab", new[] { 2, 3 }, new object?[] { null, new List<int>() } }, 4.5];
        Assert.Equal(new object?[] { 1, "ab", 2, 3, null, 4.5 }, Utils.Flatten(nested));
        Assert.Equal(new object?[] { "leaf" }, Utils.Flatten("leaf"));
        Assert.Empty(Utils.Flatten(Array.Empty<object>()));
        var tensors = new Tensor[][] { [Tensor.Scalar(1.0)], [Tensor.Scalar(2.0), Tensor.Scalar(3.0)] };
        Assert.Equal(3, Utils.Flatten(tensors).Count);
    }

    /// <summary>GetFuncParams: detached leaves with the originals' requires-grad; safeCopy true owns its storage, false shares it.</summary>
    [Fact]
    public void Utils_GetFuncParams_CopiesOrShares()
    {
        var model = TestModels.Simple(new Generator(64));
        var first = ((Linear)((Sequential)model)[0]).Weight;
        first.RequiresGrad = false;
        var originals = model.Parameters().Select(p => p.Clone()).ToList();

        var copies = Utils.GetFuncParams(model);
        Check.Same(originals, copies, "safe copies");
        Assert.All(copies, p => Assert.True(p.IsLeaf));
        Assert.Equal(model.Parameters().Select(p => p.RequiresGrad), copies.Select(p => p.RequiresGrad));
        using (Autograd.NoGrad())
        {
            copies[1].FillInPlace(7);
        }
        Check.Same(originals[1], model.Parameters().ElementAt(1), "model untouched by writing a safe copy");

        var views = Utils.GetFuncParams(model, safeCopy: false);
        Assert.Equal(model.Parameters().Select(p => p.RequiresGrad), views.Select(p => p.RequiresGrad));
        using (Autograd.NoGrad())
        {
            views[1].FillInPlace(7);
        }
        Assert.All(model.Parameters().ElementAt(1).ToDoubleArray(), v => Assert.Equal(7, v));
    }
}
