using System.Text.RegularExpressions;
using Higher.Cuda;
using Higher.Functional;
using Higher.Implicit;
using Higher.Nn;
using Higher.Optim;
using Higher.Serialization;

namespace Higher.Conformance.User;

/// <summary>
/// Every C# snippet of the README, compiled and run here: each is a <c>#region readme: name</c> of
/// this file, and <see cref="ReadmeBlocks_AreExactlyTheseRegions"/> checks that the README's
/// <c>```csharp</c> blocks are these regions' text, each region once, so neither can drift from the other.
/// </summary>
public sealed partial class ReadmeSnippets
{
    private sealed record SineTask(Tensor SupportX, Tensor SupportY, Tensor QueryX, Tensor QueryY);

    private static List<SineTask> Tasks(int count, ulong seed)
    {
        var g = new Generator(seed);
        var tasks = new List<SineTask>();
        for (int i = 0; i < count; i++)
        {
            double a = 0.1 + (4.9 * g.NextDouble()), phase = Math.PI * g.NextDouble();
            Tensor Draw() => Tensor.Uniform([10, 1], -5, 5, DType.Float64, g);
            Tensor Y(Tensor x) => (x - phase).Sin() * a;
            var (xs, xq) = (Draw(), Draw());
            tasks.Add(new SineTask(xs, Y(xs), xq, Y(xq)));
        }
        return tasks;
    }

    private static Sequential NewModel(ulong seed)
    {
        var g = new Generator(seed);
        var model = new Sequential(new Linear(1, 40, generator: g), new Relu(), new Linear(40, 1, generator: g));
        model.To(DType.Float64);
        return model;
    }

    [Fact]
    public void SecondDerivative_MatchesClosedForms()
    {
        #region readme: second-derivative
        var x = Tensor.FromArray(new[] { 0.5, 1.0, 2.0 }).WithRequiresGrad();
        var y = (x * x * x).Sin().Sum();                                  // y = Σ sin(x³)
        var dy = Autograd.Grad(y, x, createGraph: true);                  // 3x² cos(x³)
        var d2y = Autograd.Grad(dy.Sum(), x);                             // 6x cos(x³) - 9x⁴ sin(x³)
        Console.WriteLine(dy);
        Console.WriteLine(d2y);
        #endregion

        double[] xs = [0.5, 1.0, 2.0];
        var got1 = dy.ToDoubleArray();
        var got2 = d2y.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            double v = xs[i];
            Assert.Equal(3 * v * v * Math.Cos(v * v * v), got1[i], 1e-12);
            Assert.Equal((6 * v * Math.Cos(v * v * v)) - (9 * Math.Pow(v, 4) * Math.Sin(v * v * v)), got2[i], 1e-12);
        }
    }

    /// <summary>
    /// The README's MAML loop (copyInitialWeights: false fills the model's .Grad) against the
    /// copyInitialWeights: true form (Autograd.Grad on fmodel.Parameters(0)): the same meta-gradient.
    /// </summary>
    [Fact]
    public void Maml_BothWeightModes_GiveTheSameMetaGradient()
    {
        var model = NewModel(3);
        var tasks = Tasks(4, 5);
        var before = model.Parameters().Select(p => p.ToDoubleArray()).ToArray();

        #region readme: maml
        var metaOpt = new Adam(model.Parameters(), new AdamOptions { Lr = 1e-3 });
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.01 });
        metaOpt.ZeroGrad();
        foreach (var task in tasks)
        {
            using var ctx = InnerLoop.Create(model, innerOpt, copyInitialWeights: false);
            var (fmodel, diffopt) = ctx;
            diffopt.Step(F.MseLoss(fmodel.Forward(task.SupportX), task.SupportY));   // θ₁ = θ₀ - α∇L(θ₀), on the tape
            F.MseLoss(fmodel.Forward(task.QueryX), task.QueryY).Backward();          // d L_query(θ₁) / d θ₀ → model .Grad
        }
        var metaGradient = model.Parameters()[0].Grad;                               // filled: the time-0 weights are the model's
        metaOpt.Step();
        #endregion

        var fromMode = model.Parameters().Select(p => p.Grad!.ToDoubleArray()).ToArray();
        Assert.Same(metaGradient, model.Parameters()[0].Grad);
        var fresh = NewModel(3);
        Assert.Equal(before, fresh.Parameters().Select(p => p.ToDoubleArray()).ToArray());
        var sums = fresh.Parameters().Select(p => new double[p.Numel]).ToArray();
        var innerOpt2 = new Sgd(fresh.Parameters(), new SgdOptions { Lr = 0.01 });
        foreach (var task in tasks)
        {
            var metaGrads = CopiedWeightsMetaGradient(fresh, innerOpt2, task);
            for (int i = 0; i < sums.Length; i++)
            {
                var g = metaGrads[i]!.ToDoubleArray();
                for (int j = 0; j < g.Length; j++)
                {
                    sums[i][j] += g[j];
                }
            }
        }
        Assert.All(fresh.Parameters(), p => Assert.Null(p.Grad)); // copyInitialWeights: true leaves the model alone
        for (int i = 0; i < sums.Length; i++)
        {
            for (int j = 0; j < sums[i].Length; j++)
            {
                Assert.Equal(sums[i][j], fromMode[i][j], 1e-12);
            }
        }
    }

    /// <summary>The README's task-batched meta-step gives the task-by-task meta-gradient of the MAML snippet.</summary>
    [Fact]
    public void BatchedMaml_GivesTheTaskByTaskMetaGradient()
    {
        var model = NewModel(3);
        var tasks = Tasks(4, 5);
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.01 });
        foreach (var task in tasks)
        {
            using var ctx = InnerLoop.Create(model, innerOpt, copyInitialWeights: false);
            var (fm, dopt) = ctx;
            dopt.Step(F.MseLoss(fm.Forward(task.SupportX), task.SupportY));
            F.MseLoss(fm.Forward(task.QueryX), task.QueryY).Backward();
        }
        var expected = model.Parameters().Select(p => p.Grad!.ToDoubleArray()).ToArray();
        model.ZeroGrad();
        var supportX = Tensor.Stack(tasks.Select(t => t.SupportX).ToList());
        var supportY = Tensor.Stack(tasks.Select(t => t.SupportY).ToList());
        var queryX = Tensor.Stack(tasks.Select(t => t.QueryX).ToList());
        var queryY = Tensor.Stack(tasks.Select(t => t.QueryY).ToList());

        #region readme: maml-batched
        using var batched = InnerLoop.CreateBatched(model, innerOpt, tasks: 4, copyInitialWeights: false);
        var (fmodel, diffopt) = batched;                                           // fast weights [4, ...]
        diffopt.Step(TaskLosses.Mse(fmodel.Forward(supportX), supportY));          // inputs [4, 10, 1], losses [4]
        TaskLosses.Mse(fmodel.Forward(queryX), queryY).Sum().Backward();           // model .Grad: summed over the tasks
        #endregion

        for (int i = 0; i < expected.Length; i++)
        {
            var got = model.Parameters()[i].Grad!.ToDoubleArray();
            for (int j = 0; j < got.Length; j++)
            {
                Assert.Equal(expected[i][j], got[j], 1e-12);
            }
        }
    }

    private static Tensor?[] CopiedWeightsMetaGradient(Module model, Sgd innerOpt, SineTask task)
    {
        #region readme: maml-copied-weights
        using var ctx = InnerLoop.Create(model, innerOpt);                   // copyInitialWeights: true (the default)
        var (fmodel, diffopt) = ctx;
        diffopt.Step(F.MseLoss(fmodel.Forward(task.SupportX), task.SupportY));
        var queryLoss = F.MseLoss(fmodel.Forward(task.QueryX), task.QueryY);
        var metaGrads = Autograd.Grad(queryLoss, fmodel.Parameters(0));      // one per parameter, d L_query / d θ₀'
        #endregion
        return metaGrads;
    }

    [Fact]
    public void TorchHabits_CompileAndBehaveAsTorch()
    {
        #region readme: torch-habits
        var model = new Sequential(new Linear(1, 40), new Relu(), new Linear(40, 1));
        Console.WriteLine(model);                                   // Sequential(\n  (0): Linear(in_features=1, out_features=40, bias=True) ...
        var x = Tensor.Randn(10, 1);                                // shapes as integers, as torch.randn(10, 1)
        F.MseLoss(model.Forward(x), x.Sin()).Backward();
        Console.WriteLine(model.Parameters()[0].Grad!.Shape);       // [40, 1]
        var grads = Autograd.Grad(model.Forward(x).Sum(), model.Parameters());   // one output, any sequence of inputs
        #endregion

        Assert.Equal(new Shape(40, 1), model.Parameters()[0].Grad!.Shape);
        Assert.Equal(4, grads.Length);
        Assert.StartsWith("Sequential(\n  (0): Linear(in_features=1, out_features=40, bias=True)\n  (1): Relu()\n", model.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Checkpoints_RoundTrip()
    {
        var model = NewModel(11);
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = 0.01 });
        var x = Tensor.Randn([8, 1], DType.Float64, new Generator(2));
        opt.ZeroGrad();
        F.MseLoss(model.Forward(x), x.Sin()).Backward();
        opt.Step();
        string dir = Directory.CreateTempSubdirectory("higher-readme-").FullName;
        try
        {
            #region readme: checkpoint
            SafeTensors.SaveModel(model, $"{dir}/model.safetensors");          // safetensors.torch.load_file reads it
            SafeTensors.SaveOptimizer(opt, $"{dir}/adam.safetensors");
            var restored = new Sequential(new Linear(1, 40), new Relu(), new Linear(40, 1));
            SafeTensors.LoadModel(restored, $"{dir}/model.safetensors");       // strict: a missing key or a wrong shape throws, naming both shapes
            var restoredOpt = new Adam(restored.Parameters(), new AdamOptions { Lr = 0.01 });
            SafeTensors.LoadOptimizer(restoredOpt, $"{dir}/adam.safetensors");
            #endregion

            for (int i = 0; i < 4; i++)
            {
                // float64 weights load into the float32 module: equal to float32 rounding.
                var a = model.Parameters()[i].ToDoubleArray();
                var b = restored.Parameters()[i].ToDoubleArray();
                Assert.Equal(a.Select(v => (double)(float)v), b);
            }
            Assert.Equal(1, restoredOpt.StateDict().State[0].Step);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }


    /// <summary>The README's learned learning rate: its hypergradient against a central finite difference of the same unrolled run.</summary>
    [Fact]
    public void LearnedLearningRate_HypergradientMatchesFiniteDifferences()
    {
        var model = NewModel(21);
        var g = new Generator(22);
        var xTrain = Tensor.Uniform([16, 1], -3, 3, DType.Float64, g);
        var yTrain = xTrain.Sin();
        var xVal = Tensor.Uniform([32, 1], -3, 3, DType.Float64, g);
        var yVal = xVal.Sin();
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.01 });

        #region readme: learned-lr
        var logLr = Tensor.Scalar(Math.Log(0.01), DType.Float64).WithRequiresGrad();
        using var ctx = InnerLoop.Create(model, innerOpt, @override: new Override().Set("lr", logLr.Exp()));
        var (fmodel, diffopt) = ctx;
        for (int t = 0; t < 10; t++)
        {
            diffopt.Step(F.MseLoss(fmodel.Forward(xTrain), yTrain));          // lr is a tensor on the tape
        }
        var hypergradient = Autograd.Grad(F.MseLoss(fmodel.Forward(xVal), yVal), logLr);   // d L_val / d log lr
        #endregion

        double Val(double lr)
        {
            using var c = InnerLoop.Create(model, innerOpt, trackHigherGrads: false, @override: new Override().Set("lr", lr));
            var (fm, opt) = c;
            for (int t = 0; t < 10; t++)
            {
                opt.Step(F.MseLoss(fm.Forward(xTrain), yTrain));
            }
            using (Autograd.NoGrad())
            {
                return F.MseLoss(fm.Forward(xVal), yVal).Item();
            }
        }
        const double H = 1e-5;
        double fd = (Val(Math.Exp(Math.Log(0.01) + H)) - Val(Math.Exp(Math.Log(0.01) - H))) / (2 * H);
        Assert.Equal(fd, hypergradient.Item(), 1e-7);
        Assert.True(Math.Abs(fd) > 1e-4, "the learning rate should matter to the validation loss");
    }

    [Fact]
    public void Cuda_IsUsedWhereItExists_AndSaysWhyNotElsewhere()
    {
        var model = new Sequential(new Linear(1, 40), new Relu(), new Linear(40, 1));
        #region readme: cuda
        if (CudaBackend.TryGetShared(out var cuda, out string reason))
        {
            Backends.Register(cuda!);
            model.To(Device.Cuda(0));
        }
        else
        {
            Console.WriteLine($"CUDA not used: {reason}");    // no driver, no device, or native/build.sh not run
        }
        #endregion

        if (cuda is not null)
        {
            Assert.Equal(Device.Cuda(0), model.Parameters()[0].Device);
        }
        else
        {
            Assert.False(string.IsNullOrWhiteSpace(reason));
            Assert.Equal(Device.Cpu, model.Parameters()[0].Device);
        }
    }


    /// <summary>The README's scope example: the kept loss is readable, the prediction made inside is released and throws, and the step equals an unscoped twin's.</summary>
    [Fact]
    public void Scope_KeepsWhatWasKept_AndReleasesTheRest()
    {
        var model = NewModel(7);
        var twin = NewModel(7);
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        var twinOpt = new Sgd(twin.Parameters(), new SgdOptions { Lr = 0.1 });
        var task = Tasks(1, 9)[0];
        var (x, y) = (task.SupportX, task.SupportY);

        #region readme: scope
        Tensor loss, prediction;
        using (var scope = Tensor.NewScope())                   // or TensorScope.Run(() => ...) to keep a result
        {
            scope.Keep(model);                                  // its parameters, their Grad and its buffers survive
            prediction = model.Forward(x);
            loss = scope.Keep(F.MseLoss(prediction, y));        // or loss.MoveTo(outerScope); MoveTo(null): to the GC
            loss.Backward();                                    // a parameter's Grad survives anyway (it outlives the scope)
            opt.Step();
        }                                                       // every other storage made inside goes back here
        Console.WriteLine(loss.Item());                         // kept: readable
        Console.WriteLine(prediction.IsReleased);               // True: using it now throws, naming the scope
        #endregion

        var twinLoss = F.MseLoss(twin.Forward(x), y);
        twinLoss.Backward();
        twinOpt.Step();
        Assert.Equal(twinLoss.Item(), loss.Item());
        Assert.True(prediction.IsReleased);
        Assert.Throws<ObjectDisposedException>(() => prediction.Sum());
        for (int i = 0; i < model.Parameters().Count; i++)
        {
            Assert.Equal(twin.Parameters()[i].ToDoubleArray(), model.Parameters()[i].ToDoubleArray());
            Assert.Equal(twin.Parameters()[i].Grad!.ToDoubleArray(), model.Parameters()[i].Grad!.ToDoubleArray());
        }
    }

    [Fact]
    public void CheckpointedUnroll_EqualsTheKeptUnroll()
    {
        var g = new Generator(31);
        var xs = Enumerable.Range(0, 100).Select(_ => Tensor.Rand([8, 4], DType.Float64, g)).ToArray();
        var ys = Enumerable.Range(0, 100).Select(_ => Tensor.FromArray(Enumerable.Range(0, 8).Select(_ => (long)g.NextInt(3)).ToArray())).ToArray();
        var (xVal, yVal) = (Tensor.Rand([8, 4], DType.Float64, g), Tensor.FromArray(Enumerable.Range(0, 8).Select(_ => (long)g.NextInt(3)).ToArray()));
        var logLr = Tensor.Full([100], Math.Log(0.1), DType.Float64).WithRequiresGrad();
        Sequential NewLinear()
        {
            var m = new Sequential(new Linear(4, 3, generator: new Generator(32)));
            m.To(DType.Float64);
            return m;
        }

        var twin = NewLinear();
        using (var kept = InnerLoop.Create(twin, new Sgd(twin.Parameters()), copyInitialWeights: false))
        {
            var (fmodel, diffopt) = kept;
            for (int t = 0; t < 100; t++)
            {
                diffopt.Step(F.CrossEntropy(fmodel.Forward(xs[t]), ys[t]), @override: new Override().Set("lr", logLr.Select(0, t).Exp()));
            }
            F.CrossEntropy(fmodel.Forward(xVal), yVal).Backward();
        }
        var expectedLr = logLr.Grad!.ToDoubleArray();
        logLr.Grad = null;

        var model = NewLinear();
        #region readme: checkpointed-unroll
        using var ctx = CheckpointedInnerLoop.Create(model, new Sgd(model.Parameters()), checkpointEvery: 10, copyInitialWeights: false);
        ctx.Unroll(100, (fmodel, t) => F.CrossEntropy(fmodel.Forward(xs[t]), ys[t]),      // same batch for the same t
            overrideAt: t => new Override().Set("lr", logLr.Select(0, t).Exp()));        // a schedule on the tape
        F.CrossEntropy(ctx.FModel.Forward(xVal), yVal).Backward();                      // model Grad and logLr.Grad
        #endregion

        var actual = logLr.Grad!.ToDoubleArray();
        double scale = expectedLr.Max(Math.Abs);
        Assert.True(scale > 0);
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expectedLr[i]) <= 1e-12 * scale, $"step {i}: kept {expectedLr[i]:R}, checkpointed {actual[i]:R}");
        }
        for (int i = 0; i < model.Parameters().Count; i++)
        {
            var e = twin.Parameters()[i].Grad!.ToDoubleArray();
            var a = model.Parameters()[i].Grad!.ToDoubleArray();
            for (int j = 0; j < e.Length; j++)
            {
                Assert.True(Math.Abs(e[j] - a[j]) <= 1e-12 * e.Max(Math.Abs), $"parameter {i} element {j}: kept {e[j]:R}, checkpointed {a[j]:R}");
            }
        }
    }

    [Fact]
    public void ImplicitMetaGradient_OfAPlainSgdAdaptation()
    {
        var model = NewModel(33);
        var fmodel = Patch.Monkeypatch(model, trackHigherGrads: false);
        var phi = model.Parameters().ToList();
        var task = Tasks(1, 34)[0];
        var (xs, ys, xq, yq) = (task.SupportX, task.SupportY, task.QueryX, task.QueryY);
        Tensor[] AdaptWithPlainSgd(IReadOnlyList<Tensor> anchor)
        {
            var theta = anchor.Select(p => p.Detach().Clone().WithRequiresGrad()).ToArray();
            var sgd = new Sgd(theta, new SgdOptions { Lr = 0.01 });
            for (int s = 0; s < 50; s++)
            {
                sgd.ZeroGrad();
                var loss = F.MseLoss(fmodel.Forward(xs, theta), ys);
                for (int i = 0; i < theta.Length; i++)
                {
                    loss = loss + 2.0 * (theta[i] - anchor[i].Detach()).Square().Sum();
                }
                loss.Backward();
                sgd.Step();
            }
            return theta.Select(t => t.Detach()).ToArray();
        }

        #region readme: implicit
        var thetaStar = AdaptWithPlainSgd(phi);                                           // no tape
        var root = ImplicitDiff.Minimum(thetaStar, phi, (theta, _) => F.MseLoss(fmodel.Forward(xs, theta), ys),
            proximal: 4.0, new LinearSolveOptions { MaxIterations = 5 });
        F.MseLoss(fmodel.Forward(xq, root.Solution), yq).Backward();                     // φ's Grad
        Console.WriteLine(root.LastSolve);   // e.g. "ConjugateGradient: 5 iterations, relative residual 2.1E-002"
        #endregion

        Assert.NotNull(root.LastSolve);
        Assert.InRange(root.LastSolve!.Iterations, 1, 5);
        Assert.True(root.LastSolve.RelativeResidual < 1, root.LastSolve.ToString());
        Assert.All(phi, p => Assert.True(p.Grad!.ToDoubleArray().All(double.IsFinite)));
        Assert.Contains(phi, p => p.Grad!.ToDoubleArray().Any(v => v != 0));
    }

    [Fact]
    public void ReadmeBlocks_AreExactlyTheseRegions()
    {
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Readme", "README.md"));
        string source = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Readme", "ReadmeSnippets.cs.txt"));
        var blocks = CsharpBlock().Matches(readme).Select(m => m.Groups[1].Value.TrimEnd('\n')).ToList();
        var regions = Region().Matches(source).Select(m => (Name: m.Groups[1].Value, Text: Dedent(m.Groups[2].Value))).ToList();
        Assert.NotEmpty(blocks);
        var unused = regions.ToList();
        for (int i = 0; i < blocks.Count; i++)
        {
            int match = unused.FindIndex(r => r.Text == blocks[i]);
            Assert.True(match >= 0, $"README's csharp block {i + 1} is not the text of any '#region readme:' of ReadmeSnippets.cs (edit both together):\n{blocks[i]}");
            unused.RemoveAt(match);
        }
        Assert.True(unused.Count == 0, $"Regions not in the README: {string.Join(", ", unused.Select(r => r.Name))}.");
    }

    private static string Dedent(string text)
    {
        var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).Where((l, i) => i > 0 || l.Trim().Length > 0).ToList();
        while (lines.Count > 0 && lines[^1].Trim().Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }
        int indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart(' ').Length);
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart(' ')));
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CsharpBlock();

    [GeneratedRegex(@"#region readme: ([\w-]+)\n(.*?)\n\s*#endregion", RegexOptions.Singleline)]
    private static partial Regex Region();
}
