namespace Higher.Optim.Schedulers;

/// <summary>How <see cref="OneCycleLR"/> moves between its phase endpoints.</summary>
public enum AnnealStrategy
{
    /// <summary>end + (start - end)/2 · (1 + cos(π·pct)).</summary>
    Cos,
    /// <summary>start + (end - start)·pct.</summary>
    Linear,
}

/// <summary>Options of <see cref="OneCycleLR"/> (PyTorch's defaults).</summary>
public sealed record OneCycleLROptions
{
    /// <summary>Fraction of the steps spent increasing the learning rate.</summary>
    public double PctStart { get; init; } = 0.3;
    /// <summary>Cosine or linear annealing.</summary>
    public AnnealStrategy AnnealStrategy { get; init; } = AnnealStrategy.Cos;
    /// <summary>Cycle the momentum ("momentum", or "beta1" for Adam-like optimizers) inversely to the learning rate.</summary>
    public bool CycleMomentum { get; init; } = true;
    /// <summary>Lowest momentum of the cycle.</summary>
    public double BaseMomentum { get; init; } = 0.85;
    /// <summary>Highest momentum of the cycle.</summary>
    public double MaxMomentum { get; init; } = 0.95;
    /// <summary>initial_lr = max_lr / div_factor.</summary>
    public double DivFactor { get; init; } = 25;
    /// <summary>min_lr = initial_lr / final_div_factor.</summary>
    public double FinalDivFactor { get; init; } = 1e4;
    /// <summary>Three phases (up, back down to initial_lr, then down to min_lr) instead of two.</summary>
    public bool ThreePhase { get; init; }
    /// <summary>-1 for a fresh schedule, else the step to resume after.</summary>
    public int LastEpoch { get; init; } = -1;
}

/// <summary>
/// The 1cycle policy as torch's OneCycleLR (1.13): the lr rises from max_lr/div_factor to max_lr over
/// the first pct_start of <c>totalSteps</c>, then falls to initial_lr/final_div_factor (with
/// three_phase: falls back to initial_lr first, then to min_lr); the momentum moves the opposite way.
/// It writes "initial_lr", "max_lr", "min_lr" (and "max_momentum", "base_momentum") into the groups.
/// </summary>
public sealed class OneCycleLR : LRScheduler
{
    private readonly int _totalSteps;
    private readonly (double EndStep, string StartLr, string EndLr, string StartMomentum, string EndMomentum)[] _phases;
    private readonly AnnealStrategy _anneal;
    private readonly bool _cycleMomentum;
    private readonly string _momentumKey = "momentum";

    /// <summary>One maximum learning rate for every group.</summary>
    public OneCycleLR(IHyperParameterGroups optimizer, double maxLr, int totalSteps, OneCycleLROptions? options = null)
        : this(optimizer, [maxLr], totalSteps, options)
    {
    }

    /// <summary>One maximum learning rate per group.</summary>
    public OneCycleLR(IHyperParameterGroups optimizer, IReadOnlyList<double> maxLrs, int totalSteps, OneCycleLROptions? options = null)
        : base(optimizer, (options ?? new OneCycleLROptions()).LastEpoch)
    {
        var o = options ?? new OneCycleLROptions();
        if (totalSteps <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "Expected a positive number of total steps.");
        }
        if (!(o.PctStart is >= 0 and <= 1))
        {
            throw new ArgumentException($"Expected pct_start between 0 and 1, but got {o.PctStart}.", nameof(options));
        }
        _totalSteps = totalSteps;
        _anneal = o.AnnealStrategy;
        double p = o.PctStart * totalSteps;
        _phases = o.ThreePhase
            ?
            [
                (p - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (2 * p - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (totalSteps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
            :
            [
                (p - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (totalSteps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ];
        var groups = Groups;
        var maxima = PerGroup(optimizer, maxLrs, "maxLr");
        if (o.LastEpoch == -1)
        {
            for (int i = 0; i < groups.Count; i++)
            {
                groups[i]["initial_lr"] = maxima[i] / o.DivFactor;
                groups[i]["max_lr"] = maxima[i];
                groups[i]["min_lr"] = groups[i]["initial_lr"] / o.FinalDivFactor;
            }
        }
        _cycleMomentum = o.CycleMomentum;
        if (_cycleMomentum)
        {
            if (groups.Count > 0 && groups[0].ContainsKey("beta1"))
            {
                _momentumKey = "beta1";
            }
            else if (groups.Count == 0 || !groups[0].ContainsKey("momentum"))
            {
                throw new ArgumentException("OneCycleLR with CycleMomentum needs an optimizer with a 'momentum' or 'beta1' hyperparameter; pass CycleMomentum = false otherwise.", nameof(optimizer));
            }
            if (o.LastEpoch == -1)
            {
                foreach (var g in groups)
                {
                    g[_momentumKey] = o.MaxMomentum;
                    g["max_momentum"] = o.MaxMomentum;
                    g["base_momentum"] = o.BaseMomentum;
                }
            }
        }
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr()
    {
        int step = LastEpoch;
        if (step > _totalSteps)
        {
            throw new InvalidOperationException($"Tried to step {step + 1} times. The specified number of total steps is {_totalSteps}.");
        }
        var groups = Groups;
        var lrs = new double[groups.Count];
        for (int gi = 0; gi < groups.Count; gi++)
        {
            var group = groups[gi];
            double start = 0;
            for (int i = 0; i < _phases.Length; i++)
            {
                var phase = _phases[i];
                if (step <= phase.EndStep || i == _phases.Length - 1)
                {
                    double pct = (step - start) / (phase.EndStep - start);
                    lrs[gi] = Anneal(Read(group, phase.StartLr, gi), Read(group, phase.EndLr, gi), pct);
                    if (_cycleMomentum)
                    {
                        group[_momentumKey] = Anneal(Read(group, phase.StartMomentum, gi), Read(group, phase.EndMomentum, gi), pct);
                    }
                    break;
                }
                start = phase.EndStep;
            }
        }
        return lrs;
    }

    private double Anneal(double start, double end, double pct) => _anneal == AnnealStrategy.Cos
        ? end + (start - end) / 2.0 * (Math.Cos(Math.PI * pct) + 1)
        : (end - start) * pct + start;
}
