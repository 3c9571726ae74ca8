using Higher.Nn;
using Higher.Optim;

namespace Higher.Functional;

public static partial class InnerLoop
{
    /// <summary>
    /// An inner-loop context over <paramref name="tasks"/> tasks at once: one batched computation
    /// instead of T task-by-task contexts. The fast weights carry a leading task dimension, [T, ...];
    /// at time 0 every task starts from the model's parameters. Inputs are [T, B, ...] (task t's batch
    /// at index t), every layer of Higher.Nn runs its task-batched form (<see cref="Binding.Tasks"/>),
    /// buffers (batch-norm statistics) are per task, and losses keep the task dimension
    /// (<see cref="TaskLosses"/>): <c>diffopt.Step(losses)</c> on the per-task losses [T] (their sum) gives
    /// each task exactly its own gradient, and the optimizer steps every task at once with per-task
    /// state. Everything else works as in <see cref="Create"/>: first order, tracking off, truncation,
    /// gradient callbacks (they receive [T, ...] gradients; a transform that mixes elements, a global
    /// norm clip, then mixes tasks), schedules on <c>diffopt.ParamGroups</c> (shared by the tasks), and
    /// overrides, shared by every task or given per task with <see cref="Override.SetPerTask"/> ([T]
    /// tensors, each task's value receiving its own gradient).
    /// <code>
    /// using var ctx = InnerLoop.CreateBatched(model, opt, tasks: 25, copyInitialWeights: false);
    /// var (fmodel, diffopt) = ctx;
    /// for (int k = 0; k &lt; 5; k++) diffopt.Step(TaskLosses.Mse(fmodel.Forward(xs), ys)); // xs [25, K, 1]
    /// TaskLosses.Mse(fmodel.Forward(xq), yq).Sum().Backward(); // model grads: summed over the tasks
    /// </code>
    /// The results equal T task-by-task contexts to rounding (the tests check 1e-12 in float64), with
    /// two exceptions by design: dropout draws one mask for the whole batch, not T masks in the
    /// task-by-task order, and a gradient callback sees every task at once.
    /// </summary>
    /// <param name="model">The model; every module in it must be able to run task-batched (<see cref="Module.TaskBatchingLimitation"/>).</param>
    /// <param name="opt">An optimizer over (a subset of) the model's parameters, of a registered type whose rule treats elements independently (every built-in one does).</param>
    /// <param name="tasks">T, the number of tasks, at least 1.</param>
    /// <param name="device">Device to cast fast weights and state to.</param>
    /// <param name="copyInitialWeights">
    /// True: the time-0 fast weights [T, ...] are detached copies (leaves), and the outer gradient reaches
    /// <c>fmodel.Parameters(0)</c>, one per task. False: they are the model's parameters broadcast over the
    /// tasks on the tape, so the outer backward fills the model's Grad with the sum over tasks (MAML).
    /// </param>
    /// <param name="override">Hyperparameter overrides: shared values, or per-task values (<see cref="Override.SetPerTask"/>).</param>
    /// <param name="trackHigherGrads">False for test time: no graph is kept across steps.</param>
    /// <param name="firstOrder">First-order MAML: gradients without graphs, updates recorded.</param>
    /// <param name="truncateEvery">Cut the graph every this many steps.</param>
    /// <param name="releaseOnDispose">Make the context a <see cref="TensorScope"/>, as in <see cref="Create"/>.</param>
    public static InnerLoopContext CreateBatched(Module model, Optimizer opt, int tasks, Device? device = null, bool copyInitialWeights = true,
        Override? @override = null, bool trackHigherGrads = true, bool firstOrder = false, int? truncateEvery = null, bool releaseOnDispose = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(opt);
        if (tasks < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(tasks), tasks, $"InnerLoop.CreateBatched: tasks must be at least 1; got {tasks}.");
        }
        var options = Options("InnerLoop.CreateBatched", device, @override, trackHigherGrads, firstOrder, truncateEvery, tasks);
        foreach (var (name, module) in model.NamedModules())
        {
            if (module.TaskBatchingLimitation is { } why)
            {
                throw new ArgumentException(
                    $"InnerLoop.CreateBatched: layer '{(name.Length == 0 ? "(the model itself)" : name)}' ({module.GetType().Name}) of the {model.GetType().Name} cannot run task-batched: {why}", nameof(model));
            }
        }
        CheckUpdatesModel(model, opt, "InnerLoop.CreateBatched");
        @override?.ValidateTasks(tasks, "InnerLoop.CreateBatched");
        return Open(model, opt, releaseOnDispose ? "the task-batched inner-loop context" : null,
            () => new FunctionalModule(model, InitialWeights(model, tasks, device, copyInitialWeights), trackHigherGrads, device, tasks), options);
    }

    /// <summary>The time-0 fast weights [T, ...]: detached leaf copies, or the parameters broadcast on the tape.</summary>
    private static List<Tensor> InitialWeights(Module model, int tasks, Device? device, bool copy)
    {
        var list = new List<Tensor>();
        foreach (var p in model.Parameters())
        {
            if (copy)
            {
                using var _ = Autograd.NoGrad();
                var source = device is { } d ? p.Detach().To(d) : p.Detach();
                // With one task the broadcast is a view of the parameter's storage: copied, so a meta-step cannot move it.
                var weights = TaskBatching.Broadcast(source, tasks);
                list.Add((tasks == 1 ? weights.Clone() : weights).Detach().WithRequiresGrad(p.RequiresGrad));
            }
            else
            {
                list.Add(TaskBatching.Broadcast(device is { } d ? p.To(d) : p, tasks));
            }
        }
        return list;
    }
}
