namespace Higher.Optim.Schedulers;

/// <summary>
/// Base of the learning-rate schedulers, as torch.optim.lr_scheduler._LRScheduler (1.13): each
/// <see cref="Step"/> advances <see cref="LastEpoch"/> and writes every group's "lr". Schedulers
/// drive anything with named hyperparameter groups (<see cref="IHyperParameterGroups"/>): an
/// <see cref="Optimizer"/>, or a differentiable optimizer's groups.
/// </summary>
/// <remarks>
/// As in torch, constructing a scheduler takes the first step (epoch 0), and a fresh scheduler
/// records each group's starting lr as "initial_lr" in the group (kept when already there), which
/// is what a resumed scheduler (lastEpoch ≥ 0) starts from.
/// </remarks>
public abstract class LRScheduler
{
    private readonly int _resumeEpoch;
    private double[] _baseLrs = [];
    private double[] _lastLr = [];

    /// <summary>Attaches to <paramref name="optimizer"/>; the derived constructor ends with <see cref="InitialStep"/>.</summary>
    /// <param name="optimizer">The groups to drive.</param>
    /// <param name="lastEpoch">-1 for a fresh schedule; otherwise the epoch to resume after (groups must hold "initial_lr").</param>
    protected LRScheduler(IHyperParameterGroups optimizer, int lastEpoch)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(lastEpoch, -1);
        Optimizer = optimizer;
        _resumeEpoch = lastEpoch;
        LastEpoch = lastEpoch;
    }

    /// <summary>The driven groups.</summary>
    public IHyperParameterGroups Optimizer { get; }

    /// <summary>The groups' hyperparameter dictionaries.</summary>
    protected IReadOnlyList<IDictionary<string, double>> Groups => Optimizer.HyperParameterGroups;

    /// <summary>The index of the last epoch (step) taken: 0 right after construction of a fresh scheduler.</summary>
    public int LastEpoch { get; private set; }

    /// <summary>How many times <see cref="Step"/> ran, the constructor's step included (torch's _step_count).</summary>
    protected int StepCount { get; private set; }

    /// <summary>Each group's "initial_lr".</summary>
    public IReadOnlyList<double> BaseLrs => _baseLrs;

    /// <summary>The learning rates the last <see cref="Step"/> wrote, one per group.</summary>
    public IReadOnlyList<double> GetLastLr() => _lastLr;

    /// <summary>
    /// Records the base learning rates and takes the first step; called at the end of every derived
    /// constructor, once its own fields (and any group entries it sets up) are in place.
    /// </summary>
    protected void InitialStep()
    {
        var groups = Groups;
        // Every group is checked before any is written: a refused scheduler leaves the groups as they were.
        for (int i = 0; i < groups.Count; i++)
        {
            if (_resumeEpoch == -1)
            {
                Read(groups[i], "lr", i);
            }
            else if (!groups[i].ContainsKey("initial_lr"))
            {
                throw new ArgumentException(
                    $"{GetType().Name}: parameter group {i} has no 'initial_lr', which resuming at lastEpoch {_resumeEpoch} needs. Create the scheduler with lastEpoch -1 first.");
            }
        }
        if (_resumeEpoch == -1)
        {
            for (int i = 0; i < groups.Count; i++)
            {
                groups[i].TryAdd("initial_lr", groups[i]["lr"]);
            }
        }
        _baseLrs = groups.Select(g => g["initial_lr"]).ToArray();
        StepCount = 0;
        Step();
    }

    /// <summary>
    /// Advances one epoch and writes the new learning rate of every group. The rates are computed
    /// and checked (one per group, finite, ≥ 0) before anything changes: a step that throws leaves
    /// the epoch, the step count and every group's lr as they were.
    /// </summary>
    public void Step()
    {
        StepCount++;
        LastEpoch++;
        IReadOnlyList<double> values;
        try
        {
            values = ComputeLr();
            var groups = Groups;
            if (values.Count != groups.Count)
            {
                throw new InvalidOperationException($"{GetType().Name} computed {values.Count} learning rates for {groups.Count} parameter groups.");
            }
            for (int i = 0; i < values.Count; i++)
            {
                if (!double.IsFinite(values[i]) || values[i] < 0)
                {
                    throw new InvalidOperationException(
                        $"{GetType().Name}.Step: epoch {LastEpoch} would set the lr of parameter group {i} to {values[i].ToString(System.Globalization.CultureInfo.InvariantCulture)}; a learning rate must be finite and ≥ 0.");
                }
            }
        }
        catch
        {
            StepCount--;
            LastEpoch--;
            throw;
        }
        var g2 = Groups;
        for (int i = 0; i < g2.Count; i++)
        {
            g2[i]["lr"] = values[i];
        }
        _lastLr = g2.Select(g => g["lr"]).ToArray();
    }

    /// <summary>
    /// The scheduler's progress (torch's state_dict): last epoch, step count, base and last learning
    /// rates. The groups' current learning rates belong to the optimizer's state dictionary.
    /// </summary>
    public SchedulerState StateDict() => new(LastEpoch, StepCount, _baseLrs.ToArray(), _lastLr.ToArray());

    /// <summary>
    /// Restores progress saved by <see cref="StateDict"/> from a scheduler of the same kind over as
    /// many groups; throws naming the mismatch and changes nothing. Load the optimizer's state too.
    /// </summary>
    public void LoadStateDict(SchedulerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        int groups = Groups.Count;
        if (state.BaseLrs.Count != groups || state.LastLr.Count != groups)
        {
            throw new ArgumentException($"{GetType().Name}.LoadStateDict: the state has {state.BaseLrs.Count} base and {state.LastLr.Count} last learning rates, but there are {groups} parameter groups.", nameof(state));
        }
        if (state.LastEpoch < -1 || state.StepCount < 0)
        {
            throw new ArgumentException($"{GetType().Name}.LoadStateDict: invalid progress (last epoch {state.LastEpoch}, step count {state.StepCount}).", nameof(state));
        }
        LastEpoch = state.LastEpoch;
        StepCount = state.StepCount;
        _baseLrs = state.BaseLrs.ToArray();
        _lastLr = state.LastLr.ToArray();
    }

    /// <summary>The learning rates for <see cref="LastEpoch"/> (torch's chainable get_lr), one per group.</summary>
    protected abstract IReadOnlyList<double> ComputeLr();

    /// <summary>A group's hyperparameter, or an error naming the group and the missing key.</summary>
    protected double Read(IDictionary<string, double> group, string name, int index)
    {
        ArgumentNullException.ThrowIfNull(group);
        return group.TryGetValue(name, out var v) ? v
            : throw new KeyNotFoundException($"{GetType().Name}: parameter group {index} has no hyperparameter '{name}'; it has: {string.Join(", ", group.Keys)}.");
    }

    /// <summary>Expands one value to every group, or checks that a list has one value per group.</summary>
    protected static double[] PerGroup(IHyperParameterGroups optimizer, IReadOnlyList<double> values, string name)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(values);
        int n = optimizer.HyperParameterGroups.Count;
        if (values.Count == 1)
        {
            return Enumerable.Repeat(values[0], n).ToArray();
        }
        if (values.Count != n)
        {
            throw new ArgumentException($"Expected {n} values for {name} (one per parameter group), got {values.Count}.", name);
        }
        return values.ToArray();
    }
}

/// <summary>A scheduler's progress, as saved by <see cref="LRScheduler.StateDict"/>.</summary>
/// <param name="LastEpoch">The last epoch taken.</param>
/// <param name="StepCount">How many steps were taken, the constructor's included.</param>
/// <param name="BaseLrs">Each group's initial learning rate.</param>
/// <param name="LastLr">The learning rates the last step wrote.</param>
public sealed record SchedulerState(int LastEpoch, int StepCount, IReadOnlyList<double> BaseLrs, IReadOnlyList<double> LastLr);
