using Higher.Optim;

namespace Higher.Functional;

/// <summary>
/// The pieces of a task-batched inner loop (<see cref="InnerLoop.CreateBatched"/>) that the functional
/// module and the differentiable optimizer share: shapes with a leading task dimension, weights and
/// state broadcast over tasks, the per-task loss, and the update rule run over T tasks at once.
/// </summary>
internal static class TaskBatching
{
    /// <summary>[T, ...shape].</summary>
    public static Shape WithTasks(Shape shape, int tasks) => new([tasks, .. shape.ToArray()]);

    /// <summary>
    /// <paramref name="t"/> repeated over a new leading task dimension, [T, ...]: a copy on the tape,
    /// whose backward sums over the tasks (so the model's parameter receives every task's gradient).
    /// </summary>
    public static Tensor Broadcast(Tensor t, int tasks) => t.Unsqueeze(0).Expand([tasks, .. t.Shape.ToArray()]);

    /// <summary>A per-task vector [T] as [T, 1, ..., 1] of rank <paramref name="rank"/>, to broadcast over task-batched tensors of that rank.</summary>
    public static Tensor PerTaskView(Tensor perTask, int rank)
    {
        var dims = new int[Math.Max(rank, 1)];
        Array.Fill(dims, 1);
        dims[0] = perTask.Shape[0];
        return perTask.Reshape(dims);
    }

    /// <summary>The task count of a differentiable optimizer's options, checked against its functional module's.</summary>
    public static int CheckOptions(DifferentiableOptimizerOptions options, string optimizer)
    {
        if (options.Tasks < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Tasks, $"{optimizer}: Tasks must be 0 (a plain optimizer) or the number of tasks; got {options.Tasks}.");
        }
        if (options.FModel is { } f && f.Tasks != options.Tasks)
        {
            throw new ArgumentException(
                $"{optimizer}: the functional module batches {f.Tasks} tasks but the options say Tasks = {options.Tasks}; build both with InnerLoop.CreateBatched (or give the module's count).", nameof(options));
        }
        return options.Tasks;
    }

    /// <summary>
    /// The wrapped optimizer's state for a task-batched parameter: each per-element tensor (the
    /// parameter's shape) repeated over the tasks, scalar state (a step size, a count) shared.
    /// </summary>
    public static ParamState BroadcastState(ParamState state, Shape parameterShape, int tasks)
    {
        if (tasks == 0)
        {
            return state;
        }
        using var _ = Autograd.NoGrad();
        foreach (var key in state.Tensors.Keys.ToArray())
        {
            var t = state.Tensors[key];
            if (t.Shape == parameterShape)
            {
                state.Tensors[key] = Broadcast(t, tasks);
            }
        }
        return state;
    }

    /// <summary>
    /// The loss a task-batched step differentiates: a scalar as given, or the sum of a per-task
    /// vector [T]. Summing is what gives each task exactly its own gradient: task t's weights enter
    /// only task t's term.
    /// </summary>
    public static Tensor TaskLoss(Tensor loss, int tasks, string call)
    {
        if (loss.Rank == 0)
        {
            return loss;
        }
        if (loss.Rank == 1 && loss.Shape[0] == tasks)
        {
            return loss.Sum();
        }
        throw new ArgumentException(
            $"{call}: a task-batched step over {tasks} tasks takes the per-task losses [{tasks}] (TaskLosses keep the task dimension) or their sum; got a loss {loss.Describe()}.", nameof(loss));
    }

    /// <summary>
    /// Runs <paramref name="rule"/> on a task-batched parameter [T, ...]. The built-in rules are
    /// elementwise in the parameter, so one call updates every task exactly as T calls would; per-task
    /// hyperparameters arrive as [T, 1, ..., 1] tensors that broadcast over each task's slice.
    /// </summary>
    public static Tensor Update(Optimizer rule, Tensor p, Tensor g, ParamState state, IHyperParameters hyper, int tasks, string name)
    {
        Tensor updated;
        try
        {
            using var _ = HyperValue.AllowPerTask(tasks);
            updated = rule.Update(p, g, state, hyper);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                $"{rule.GetType().Name}'s update rule failed on the task-batched parameter{name} {p.Shape} ({tasks} tasks): {e.Message} " +
                "A rule that reads a hyperparameter as a number (to branch on it) cannot take per-task values of that hyperparameter; give it one value for all tasks.", e);
        }
        if (updated.Shape != p.Shape)
        {
            throw new InvalidOperationException(
                $"{rule.GetType().Name}'s update rule returned {updated.Shape} for the task-batched parameter{name} {p.Shape} ({tasks} tasks); a rule must keep the parameter's shape (and treat its elements independently) to run task-batched.");
        }
        return updated;
    }
}
