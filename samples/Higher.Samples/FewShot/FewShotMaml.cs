using Higher.Data;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Samples.FewShot;

/// <summary>
/// Settings of the few-shot experiment. The defaults are sized to finish in minutes on two CPU
/// cores; the paper-style run (MAML, Finn et al. 2017, and higher's maml-omniglot example) uses
/// 15 queries per class, meta-batch 32, tens of thousands of meta-iterations and 600 test tasks.
/// </summary>
public sealed record FewShotConfig
{
    /// <summary>Classes per task (N).</summary>
    public int Ways { get; init; } = 5;

    /// <summary>Support images per class (K).</summary>
    public int Shots { get; init; } = 1;

    /// <summary>Query images per class in a meta-training task.</summary>
    public int TrainQueries { get; init; } = 5;

    /// <summary>Query images per class in a meta-test task (accuracy is measured on these).</summary>
    public int TestQueries { get; init; } = 5;

    /// <summary>Inner SGD steps per meta-training task.</summary>
    public int InnerSteps { get; init; } = 5;

    /// <summary>SGD steps on the support set at meta-test time (accuracy is recorded after 0, 1, ..., this many).</summary>
    public int EvalSteps { get; init; } = 10;

    /// <summary>Inner (and test-time) SGD learning rate (higher's maml-omniglot example: 0.1).</summary>
    public double InnerLr { get; init; } = 0.1;

    /// <summary>Meta-optimizer (Adam) learning rate.</summary>
    public double MetaLr { get; init; } = 1e-3;

    /// <summary>Tasks per meta-iteration.</summary>
    public int MetaBatch { get; init; } = 4;

    /// <summary>Meta-iterations.</summary>
    public int Iterations { get; init; } = 40;

    /// <summary>First-order MAML: the inner steps' gradients are not differentiated.</summary>
    public bool FirstOrder { get; init; }

    /// <summary>Channels of each convolution (higher's network: 64).</summary>
    public int Channels { get; init; } = 64;

    /// <summary>Supervised pre-training steps of the fine-tuning baseline.</summary>
    public int PretrainIterations { get; init; } = 150;

    /// <summary>Images per pre-training step.</summary>
    public int PretrainBatch { get; init; } = 64;

    /// <summary>Meta-test tasks (the paper reports 600).</summary>
    public int Tasks { get; init; } = 50;

    /// <summary>Seed of the weights, the meta-training tasks and the pre-training batches; the test tasks use <see cref="TestSeed"/>.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Seed of the meta-test tasks and of the per-task fresh weights (the same tasks for every model and every training seed).</summary>
    public ulong TestSeed { get; init; } = 1000;

    /// <summary>Where the tensors live.</summary>
    public Device Device { get; init; } = Device.Cpu;
}

/// <summary>Mean and 95 % interval (1.96 standard errors, as the MAML paper reports) of per-task accuracies.</summary>
/// <param name="Mean">The mean over tasks.</param>
/// <param name="HalfWidth">1.96 × sample standard deviation / √tasks (0 for one task).</param>
public readonly record struct Interval(double Mean, double HalfWidth)
{
    /// <summary>The interval of <paramref name="values"/>.</summary>
    public static Interval Of(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentOutOfRangeException.ThrowIfZero(values.Count);
        double mean = values.Average();
        if (values.Count == 1)
        {
            return new Interval(mean, 0);
        }
        double ss = values.Sum(v => (v - mean) * (v - mean));
        return new Interval(mean, 1.96 * Math.Sqrt(ss / (values.Count - 1) / values.Count));
    }

    /// <inheritdoc/>
    public override string ToString() => FormattableString.Invariant($"{100 * Mean:F2} ± {100 * HalfWidth:F2} %");
}

/// <summary>Accuracy of each test task after each number of adaptation steps: <c>PerTask[t][s]</c> after s steps.</summary>
/// <param name="PerTask">One row per task, EvalSteps + 1 columns.</param>
public sealed record StepAccuracies(double[][] PerTask)
{
    /// <summary>The interval over tasks after <paramref name="steps"/> steps.</summary>
    public Interval At(int steps) => Interval.Of(PerTask.Select(row => row[steps]).ToArray());

    /// <summary>The mean over tasks after 0, 1, ... steps.</summary>
    public double[] Means => Enumerable.Range(0, PerTask[0].Length).Select(s => At(s).Mean).ToArray();
}

/// <summary>The three models' meta-test accuracies on the same tasks.</summary>
/// <param name="Maml">MAML's meta-learned initialization, adapted on each support set.</param>
/// <param name="Pretrained">The network pre-trained on the meta-train classes, with a fresh head, fine-tuned the same way.</param>
/// <param name="Scratch">A freshly initialized network trained the same way on each support set.</param>
public sealed record FewShotResults(StepAccuracies Maml, StepAccuracies Pretrained, StepAccuracies Scratch);

/// <summary>
/// Conv MAML (Finn et al. 2017) with higher's Omniglot network, its two baselines, and the
/// meta-test evaluation. Batch norm uses the batch's statistics throughout (momentum 1, the modules
/// in training mode, as higher's maml-omniglot example does, also at test time: each query set is
/// normalized by its own statistics).
/// </summary>
public static class FewShotMaml
{
    /// <summary>
    /// higher's Omniglot network: 3 × [Conv2d(·, channels, 3), BatchNorm2d(channels, momentum 1),
    /// ReLU, MaxPool2d(2)], Flatten, Linear(·, outputs); weights drawn from <paramref name="generator"/>.
    /// </summary>
    /// <param name="imageSize">Side of the square one-channel input (28 for Fashion-MNIST: the features are then channels × 1 × 1).</param>
    /// <param name="channels">Channels of each convolution.</param>
    /// <param name="outputs">Logits.</param>
    /// <param name="generator">The weights' generator.</param>
    public static Sequential Network(int imageSize, int channels, int outputs, Generator generator)
    {
        var layers = new List<Module>();
        int side = imageSize;
        for (int i = 0; i < 3; i++)
        {
            layers.Add(new Conv2d(i == 0 ? 1 : channels, channels, 3, generator: generator));
            layers.Add(new BatchNorm2d(channels, momentum: 1));
            layers.Add(new Relu());
            layers.Add(new MaxPool2d(2, 2));
            side = (side - 2) / 2;
        }
        if (side < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, $"The network needs images of at least 22 × 22 pixels; got {imageSize}.");
        }
        layers.Add(new Flatten());
        layers.Add(new Linear(channels * side * side, outputs, generator: generator));
        return new Sequential(layers);
    }

    private static Sequential NewNetwork(FewShotConfig c, int imageSize, int outputs, Generator g)
    {
        var model = Network(imageSize, c.Channels, outputs, g);
        if (c.Device != Device.Cpu)
        {
            model.To(c.Device);
        }
        return model;
    }

    /// <summary>The fraction of rows of <paramref name="logits"/> whose largest entry is at <paramref name="labels"/>.</summary>
    public static double Accuracy(Tensor logits, Tensor labels)
    {
        using (Autograd.NoGrad())
        {
            return logits.ArgMax(1).Eq(labels).Cast(DType.Float64).Mean().Item();
        }
    }

    /// <summary>
    /// MAML meta-training on episodes of <paramref name="train"/>: per task, <see cref="FewShotConfig.InnerSteps"/>
    /// differentiable SGD steps on the support set (copyInitialWeights: false, so the time-0 weights
    /// are the model's own), then the query loss backpropagated through them into the model's
    /// gradients; Adam on the mean over the meta-batch. <paramref name="log"/> gets each iteration's
    /// mean query loss and accuracy after adaptation.
    /// </summary>
    public static Sequential MetaTrain(FewShotConfig c, EpisodeSampler train, int imageSize, Action<int, double, double>? log = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(train);
        var g = new Generator(c.Seed);
        var model = NewNetwork(c, imageSize, c.Ways, g);
        var metaOpt = new Adam(model.Parameters(), new AdamOptions { Lr = c.MetaLr });
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InnerLr });
        for (int it = 0; it < c.Iterations; it++)
        {
            double loss = 0, accuracy = 0;
            using (var scope = Tensor.NewScope())
            {
                scope.Keep(model);
                scope.Keep(metaOpt);
                metaOpt.ZeroGrad();
                for (int t = 0; t < c.MetaBatch; t++)
                {
                    var (l, a) = MetaTask(c, model, innerOpt, train.Sample(g));
                    loss += l / c.MetaBatch;
                    accuracy += a / c.MetaBatch;
                }
                metaOpt.Step();
            }
            log?.Invoke(it, loss, accuracy);
        }
        return model;
    }

    // A method of its own, so nothing of the task's graph stays reachable once it returns.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (double Loss, double Accuracy) MetaTask(FewShotConfig c, Sequential model, Sgd innerOpt, Episode episode)
    {
        using var ctx = InnerLoop.Create(model, innerOpt, copyInitialWeights: false, firstOrder: c.FirstOrder);
        var (fmodel, diffopt) = ctx;
        for (int s = 0; s < c.InnerSteps; s++)
        {
            diffopt.Step(F.CrossEntropy(fmodel.Forward(episode.SupportImages), episode.SupportLabels));
        }
        var logits = fmodel.Forward(episode.QueryImages);
        var queryLoss = F.CrossEntropy(logits, episode.QueryLabels);
        (queryLoss / c.MetaBatch).Backward();
        return (queryLoss.Item(), Accuracy(logits, episode.QueryLabels));
    }

    /// <summary>
    /// The fine-tuning baseline's pre-training: ordinary supervised training (Adam, cross-entropy over
    /// all the meta-train classes, one logit each) on random batches of <paramref name="images"/> /
    /// <paramref name="labels"/> restricted to <paramref name="classes"/>. <paramref name="log"/> gets each step's loss and batch accuracy.
    /// </summary>
    public static Sequential Pretrain(FewShotConfig c, Tensor images, Tensor labels, IReadOnlyList<int> classes, Action<int, double, double>? log = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(classes);
        var g = new Generator(c.Seed);
        var model = NewNetwork(c, images.Shape[images.Rank - 1], classes.Count, g);
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = c.MetaLr });

        // The rows of the meta-train classes, with each class's position among them as its target.
        var all = labels.ToInt64Array();
        var rows = new List<long>();
        var targets = new List<long>();
        for (long r = 0; r < all.LongLength; r++)
        {
            int k = IndexOf(classes, all[r]);
            if (k >= 0)
            {
                rows.Add(r);
                targets.Add(k);
            }
        }
        if (rows.Count == 0)
        {
            throw new ArgumentException($"Pretrain: no image has one of the classes [{string.Join(", ", classes)}].", nameof(classes));
        }
        int batch = Math.Min(c.PretrainBatch, rows.Count);
        var index = new long[batch];
        var target = new long[batch];
        for (int it = 0; it < c.PretrainIterations; it++)
        {
            for (int i = 0; i < batch; i++)
            {
                int j = g.NextInt(rows.Count);
                index[i] = rows[j];
                target[i] = targets[j];
            }
            double loss, accuracy;
            using (var scope = Tensor.NewScope())
            {
                scope.Keep(model);
                scope.Keep(opt);
                var x = images.IndexSelect(0, Tensor.FromArray(index, null, images.Device));
                var y = Tensor.FromArray(target, null, images.Device);
                var logits = model.Forward(x);
                var l = F.CrossEntropy(logits, y);
                opt.ZeroGrad();
                l.Backward();
                opt.Step();
                loss = l.Item();
                accuracy = Accuracy(logits, y);
            }
            log?.Invoke(it, loss, accuracy);
        }
        return model;
    }

    private static int IndexOf(IReadOnlyList<int> classes, long label)
    {
        for (int i = 0; i < classes.Count; i++)
        {
            if (classes[i] == label)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// Meta-test: <see cref="FewShotConfig.Tasks"/> episodes of <paramref name="test"/> drawn from
    /// <see cref="FewShotConfig.TestSeed"/>, the same for the three models. On each, every model is
    /// adapted by <see cref="FewShotConfig.EvalSteps"/> SGD steps (lr <see cref="FewShotConfig.InnerLr"/>,
    /// all parameters, no higher-order graph) on the support set, and its query accuracy is recorded
    /// after 0, 1, ... steps: MAML from its meta-learned weights; the pre-trained network with its
    /// head replaced by a fresh Linear(features, ways); and a network freshly initialized for the
    /// task (its weights, and the fresh head's, drawn from the task's own generator).
    /// <paramref name="progress"/> gets the number of tasks done.
    /// </summary>
    public static FewShotResults Evaluate(FewShotConfig c, Sequential maml, Sequential pretrained, EpisodeSampler test, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(maml);
        ArgumentNullException.ThrowIfNull(pretrained);
        ArgumentNullException.ThrowIfNull(test);
        int imageSize = test.Images.Shape[test.Images.Rank - 1];
        var features = pretrained.Children().ToList();
        var head = (Linear)features[^1];
        features.RemoveAt(features.Count - 1);
        var g = new Generator(c.TestSeed);
        var rows = new double[3][][];
        for (int m = 0; m < 3; m++)
        {
            rows[m] = new double[c.Tasks][];
        }
        for (int t = 0; t < c.Tasks; t++)
        {
            using (var scope = Tensor.NewScope())
            {
                scope.Keep(maml);
                scope.Keep(pretrained);
                var episode = test.Sample(g);
                // The task's own weights: independent of how many counters the episodes used.
                var taskGenerator = new Generator(c.TestSeed + 1 + (ulong)t);
                var scratch = NewNetwork(c, imageSize, c.Ways, taskGenerator);
                var freshHead = new Linear(head.InFeatures, c.Ways, generator: taskGenerator);
                if (c.Device != Device.Cpu)
                {
                    freshHead.To(c.Device);
                }
                var finetuned = new Sequential([.. features, freshHead]);
                rows[0][t] = Adapt(c, maml, episode);
                rows[1][t] = Adapt(c, finetuned, episode);
                rows[2][t] = Adapt(c, scratch, episode);
            }
            progress?.Invoke(t + 1);
        }
        return new FewShotResults(new StepAccuracies(rows[0]), new StepAccuracies(rows[1]), new StepAccuracies(rows[2]));
    }

    /// <summary>Query accuracy after 0..EvalSteps SGD steps on the support set; the model's own weights are not changed (a functional copy is adapted).</summary>
    public static double[] Adapt(FewShotConfig c, Module model, Episode episode)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(episode);
        var accuracy = new double[c.EvalSteps + 1];
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InnerLr });
        using var ctx = InnerLoop.Create(model, opt, trackHigherGrads: false);
        var (fmodel, diffopt) = ctx;
        for (int s = 0; s <= c.EvalSteps; s++)
        {
            using (Autograd.NoGrad())
            {
                accuracy[s] = Accuracy(fmodel.Forward(episode.QueryImages), episode.QueryLabels);
            }
            if (s < c.EvalSteps)
            {
                diffopt.Step(F.CrossEntropy(fmodel.Forward(episode.SupportImages), episode.SupportLabels));
            }
        }
        return accuracy;
    }
}
