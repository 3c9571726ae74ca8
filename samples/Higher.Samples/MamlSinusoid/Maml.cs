using Higher.Functional;
using Higher.Optim;

namespace Higher.Samples.MamlSinusoid;

/// <summary>Settings of the sinusoid experiment (defaults: the MAML paper's, HIGHER-SEMANTICS.md §5).</summary>
public sealed record MamlConfig
{
    public int Iterations { get; init; } = 10000;
    public int MetaBatch { get; init; } = 25;
    public int K { get; init; } = 10;
    public double InnerLr { get; init; } = 0.01;
    public int InnerSteps { get; init; } = 1;
    public double MetaLr { get; init; } = 1e-3;
    public int EvalTasks { get; init; } = 100;
    public int EvalQueryPoints { get; init; } = 100;
    public int[] EvalSteps { get; init; } = [0, 1, 10];
    public ulong Seed { get; init; } = 1;
    public DType DType { get; init; } = DType.Float32;
    public bool FirstOrder { get; init; }

    /// <summary>Run each meta-batch as one task-batched computation (InnerLoop.CreateBatched, fast weights [T, ...]) instead of task by task.</summary>
    public bool Batched { get; init; }

    /// <summary>Where the model and the task data live (the CPU unless a CUDA backend is registered and chosen).</summary>
    public Device Device { get; init; } = Device.Cpu;
}

/// <summary>MAML meta-training, the joint-training baseline, and few-shot evaluation.</summary>
public static class Maml
{
    private static Tensor Mse(Tensor a, Tensor b) => F.MseLoss(a, b);

    /// <summary>The 1-40-40-1 network, initialised on the CPU from the seed (the same weights on every device), then moved to the device.</summary>
    private static Mlp NewModel(MamlConfig c, Generator g)
    {
        var model = new Mlp([1, 40, 40, 1], g, c.DType);
        if (c.Device != Device.Cpu)
        {
            model.To(c.Device);
        }
        return model;
    }

    /// <summary>
    /// MAML: for each task, adapt a functional copy with differentiable SGD on K support points
    /// (copyInitialWeights: false, so the time-0 weights are the model's own), then backpropagate the
    /// query loss through the adaptation into the model's gradients; Adam on the summed meta-gradient.
    /// </summary>
    /// <param name="c">The settings.</param>
    /// <param name="log">Called after each meta-step with the iteration and the meta-batch's query loss.</param>
    /// <param name="share">
    /// A data-parallel run's share of each meta-batch (null: this process runs every task). Every process
    /// draws every task, so the tasks are the single-process run's; it adapts only its own, and
    /// <see cref="IMetaBatchShare.Reduce"/> combines the meta-gradients before the meta-step.
    /// </param>
    public static Mlp MetaTrain(MamlConfig c, Action<int, double>? log = null, IMetaBatchShare? share = null)
    {
        var g = new Generator(c.Seed);
        var model = NewModel(c, g);
        share?.Start(model);
        var (first, count) = share?.Tasks(c.MetaBatch) ?? (0, c.MetaBatch);
        var metaOpt = new Adam(model.Parameters(), new AdamOptions { Lr = c.MetaLr });
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InnerLr });
        for (int it = 0; it < c.Iterations; it++)
        {
            metaOpt.ZeroGrad();
            double total = 0;
            if (c.Batched)
            {
                total = MetaBatch(model, innerOpt, c, g, first, count);
            }
            for (int t = 0; t < c.MetaBatch && !c.Batched; t++)
            {
                var task = SinusoidTask.Sample(g);
                var (xs, ys) = task.Draw(c.K, g, c.DType, c.Device);
                var (xq, yq) = task.Draw(c.K, g, c.DType, c.Device);
                if (t < first || t >= first + count)
                {
                    continue;
                }
                using var ctx = InnerLoop.Create(model, innerOpt, copyInitialWeights: false, firstOrder: c.FirstOrder);
                var (fmodel, diffopt) = ctx;
                for (int s = 0; s < c.InnerSteps; s++)
                {
                    diffopt.Step(Mse(fmodel.Forward(xs), ys));
                }
                var queryLoss = Mse(fmodel.Forward(xq), yq) / c.MetaBatch;
                queryLoss.Backward();
                total += queryLoss.Item();
            }
            if (share is not null)
            {
                total = share.Reduce(model, it, total);
            }
            metaOpt.Step();
            log?.Invoke(it, total);
        }
        return model;
    }

    /// <summary>
    /// One meta-batch as one computation: the tasks' points stacked into [T, K, 1] (drawn in the
    /// task-by-task order, so both modes see the same tasks), fast weights [T, ...], per-task losses [T]
    /// whose sum gives each task its own inner gradient, and the mean query loss's meta-gradient in the
    /// model's parameters (summed over tasks through the broadcast of the time-0 weights).
    /// </summary>
    private static double MetaBatch(Mlp model, Sgd innerOpt, MamlConfig c, Generator g, int first, int count)
    {
        var support = new List<Tensor>[] { [], [] };
        var query = new List<Tensor>[] { [], [] };
        for (int t = 0; t < c.MetaBatch; t++)
        {
            var task = SinusoidTask.Sample(g);
            var (xs, ys) = task.Draw(c.K, g, c.DType, c.Device);
            var (xq, yq) = task.Draw(c.K, g, c.DType, c.Device);
            if (t < first || t >= first + count)
            {
                continue; // another rank's task (a data-parallel run): drawn, so every rank sees the same draws
            }
            support[0].Add(xs);
            support[1].Add(ys);
            query[0].Add(xq);
            query[1].Add(yq);
        }
        if (count == 0)
        {
            return 0;
        }
        using var ctx = InnerLoop.CreateBatched(model, innerOpt, count, copyInitialWeights: false, firstOrder: c.FirstOrder);
        var (fmodel, diffopt) = ctx;
        var (sx, sy) = (Tensor.Stack(support[0]), Tensor.Stack(support[1]));
        for (int s = 0; s < c.InnerSteps; s++)
        {
            diffopt.Step(TaskLosses.Mse(fmodel.Forward(sx), sy));
        }
        // The mean over the whole meta-batch (of which this process may run a share).
        var queryLoss = TaskLosses.Mse(fmodel.Forward(Tensor.Stack(query[0])), Tensor.Stack(query[1])).Sum() / c.MetaBatch;
        queryLoss.Backward();
        return queryLoss.Item();
    }

    /// <summary>The baseline: one model trained on all tasks jointly (same budget of tasks and points, same Adam).</summary>
    public static Mlp Pretrain(MamlConfig c, Action<int, double>? log = null)
    {
        var g = new Generator(c.Seed);
        var model = NewModel(c, g);
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = c.MetaLr });
        for (int it = 0; it < c.Iterations; it++)
        {
            opt.ZeroGrad();
            double total = 0;
            for (int t = 0; t < c.MetaBatch; t++)
            {
                var task = SinusoidTask.Sample(g);
                var (x, y) = task.Draw(2 * c.K, g, c.DType, c.Device);
                var loss = Mse(model.Forward(x), y) / c.MetaBatch;
                loss.Backward();
                total += loss.Item();
            }
            opt.Step();
            log?.Invoke(it, total);
        }
        return model;
    }

    /// <summary>
    /// Mean query MSE over held-out tasks after each number of SGD adaptation steps in
    /// <see cref="MamlConfig.EvalSteps"/>, adapting on K support points in test-time mode
    /// (no higher-order graph is kept).
    /// </summary>
    public static double[] Evaluate(Mlp model, MamlConfig c, ulong evalSeed = 12345)
    {
        var g = new Generator(evalSeed);
        int maxSteps = c.EvalSteps.Max();
        var sums = new double[c.EvalSteps.Length];
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InnerLr });
        for (int t = 0; t < c.EvalTasks; t++)
        {
            var task = SinusoidTask.Sample(g);
            var (xs, ys) = task.Draw(c.K, g, c.DType, c.Device);
            var (xq, yq) = task.Draw(c.EvalQueryPoints, g, c.DType, c.Device);
            using var ctx = InnerLoop.Create(model, innerOpt, trackHigherGrads: false);
            var (fmodel, diffopt) = ctx;
            for (int s = 0; s <= maxSteps; s++)
            {
                int slot = Array.IndexOf(c.EvalSteps, s);
                if (slot >= 0)
                {
                    using (Autograd.NoGrad())
                    {
                        sums[slot] += Mse(fmodel.Forward(xq), yq).Item();
                    }
                }
                if (s < maxSteps)
                {
                    diffopt.Step(Mse(fmodel.Forward(xs), ys));
                }
            }
        }
        return sums.Select(s => s / c.EvalTasks).ToArray();
    }

    /// <summary>
    /// The model's predictions on <paramref name="grid"/> after each number of SGD steps in
    /// <paramref name="steps"/> on the support set (xs, ys), as <see cref="Evaluate"/> adapts: one row per entry of <paramref name="steps"/>.
    /// </summary>
    public static double[][] AdaptedCurves(Mlp model, MamlConfig c, Tensor xs, Tensor ys, Tensor grid, int[] steps)
    {
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InnerLr });
        var rows = new double[steps.Length][];
        using var ctx = InnerLoop.Create(model, innerOpt, trackHigherGrads: false);
        var (fmodel, diffopt) = ctx;
        int maxSteps = steps.Max();
        for (int s = 0; s <= maxSteps; s++)
        {
            int slot = Array.IndexOf(steps, s);
            if (slot >= 0)
            {
                using (Autograd.NoGrad())
                {
                    rows[slot] = fmodel.Forward(grid).ToDoubleArray();
                }
            }
            if (s < maxSteps)
            {
                diffopt.Step(Mse(fmodel.Forward(xs), ys));
            }
        }
        return rows;
    }
}

/// <summary>
/// How one process of a data-parallel run takes part in <see cref="Maml.MetaTrain"/> (implemented over MPI
/// by the sample's --distributed mode; the MAML code itself needs no distributed package).
/// </summary>
public interface IMetaBatchShare
{
    /// <summary>Makes every process's model the same (called once, before the meta-optimizer is created).</summary>
    void Start(Higher.Nn.Module model);

    /// <summary>The tasks [Start, Start + Count) of a meta-batch of <paramref name="metaBatch"/> tasks that this process adapts.</summary>
    (int Start, int Count) Tasks(int metaBatch);

    /// <summary>Combines the processes' meta-gradients into the model's Grad before meta-step <paramref name="iteration"/>; returns the meta-batch's total loss.</summary>
    double Reduce(Higher.Nn.Module model, int iteration, double localLoss);
}
