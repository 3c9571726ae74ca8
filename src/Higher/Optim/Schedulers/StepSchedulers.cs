namespace Higher.Optim.Schedulers;

/// <summary>Multiplies each group's lr by <c>gamma</c> every <c>stepSize</c> epochs (torch's StepLR).</summary>
public sealed class StepLR : LRScheduler
{
    private readonly int _stepSize;
    private readonly double _gamma;

    /// <summary>Decays by <paramref name="gamma"/> every <paramref name="stepSize"/> epochs.</summary>
    public StepLR(IHyperParameterGroups optimizer, int stepSize, double gamma = 0.1, int lastEpoch = -1) : base(optimizer, lastEpoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(stepSize);
        _stepSize = stepSize;
        _gamma = gamma;
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr() =>
        LastEpoch == 0 || LastEpoch % _stepSize != 0
            ? Groups.Select(g => g["lr"]).ToArray()
            : Groups.Select(g => g["lr"] * _gamma).ToArray();
}

/// <summary>Multiplies each group's lr by <c>gamma</c> at every milestone epoch (torch's MultiStepLR; a repeated milestone applies gamma once per repetition).</summary>
public sealed class MultiStepLR : LRScheduler
{
    private readonly Dictionary<int, int> _milestones = [];
    private readonly double _gamma;

    /// <summary>Decays by <paramref name="gamma"/> at each of <paramref name="milestones"/>.</summary>
    public MultiStepLR(IHyperParameterGroups optimizer, IEnumerable<int> milestones, double gamma = 0.1, int lastEpoch = -1) : base(optimizer, lastEpoch)
    {
        ArgumentNullException.ThrowIfNull(milestones);
        foreach (var m in milestones)
        {
            _milestones[m] = _milestones.GetValueOrDefault(m) + 1;
        }
        _gamma = gamma;
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr() =>
        _milestones.TryGetValue(LastEpoch, out int count)
            ? Groups.Select(g => g["lr"] * Math.Pow(_gamma, count)).ToArray()
            : Groups.Select(g => g["lr"]).ToArray();
}

/// <summary>Multiplies each group's lr by <c>gamma</c> every epoch (torch's ExponentialLR).</summary>
public sealed class ExponentialLR : LRScheduler
{
    private readonly double _gamma;

    /// <summary>Decays by <paramref name="gamma"/> every epoch.</summary>
    public ExponentialLR(IHyperParameterGroups optimizer, double gamma, int lastEpoch = -1) : base(optimizer, lastEpoch)
    {
        _gamma = gamma;
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr() =>
        LastEpoch == 0 ? Groups.Select(g => g["lr"]).ToArray() : Groups.Select(g => g["lr"] * _gamma).ToArray();
}

/// <summary>Sets each group's lr to its initial lr times a function of the epoch (torch's LambdaLR).</summary>
public sealed class LambdaLR : LRScheduler
{
    private readonly Func<int, double>[] _lambdas;

    /// <summary>lr = initial_lr · <paramref name="lrLambda"/>(epoch) for every group.</summary>
    public LambdaLR(IHyperParameterGroups optimizer, Func<int, double> lrLambda, int lastEpoch = -1)
        : this(optimizer, [lrLambda ?? throw new ArgumentNullException(nameof(lrLambda))], lastEpoch)
    {
    }

    /// <summary>lr = initial_lr · lrLambdas[group](epoch); one function per group (or one for all).</summary>
    public LambdaLR(IHyperParameterGroups optimizer, IReadOnlyList<Func<int, double>> lrLambdas, int lastEpoch = -1) : base(optimizer, lastEpoch)
    {
        ArgumentNullException.ThrowIfNull(lrLambdas);
        int n = optimizer.HyperParameterGroups.Count;
        if (lrLambdas.Count != 1 && lrLambdas.Count != n)
        {
            throw new ArgumentException($"Expected {n} lr lambdas (one per parameter group), got {lrLambdas.Count}.", nameof(lrLambdas));
        }
        _lambdas = lrLambdas.Count == 1 ? Enumerable.Repeat(lrLambdas[0], n).ToArray() : lrLambdas.ToArray();
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr() => BaseLrs.Select((b, i) => b * _lambdas[i](LastEpoch)).ToArray();
}

/// <summary>
/// Cosine annealing (torch's CosineAnnealingLR, chainable form): lr_e = η_min + (lr_{e-1} - η_min)·
/// (1 + cos(πe/T))/(1 + cos(π(e-1)/T)), which follows η_min + (base - η_min)(1 + cos(πe/T))/2 and
/// continues periodically past T.
/// </summary>
public sealed class CosineAnnealingLR : LRScheduler
{
    private readonly int _tMax;
    private readonly double _etaMin;

    /// <summary>Anneals over <paramref name="tMax"/> epochs down to <paramref name="etaMin"/>.</summary>
    public CosineAnnealingLR(IHyperParameterGroups optimizer, int tMax, double etaMin = 0, int lastEpoch = -1) : base(optimizer, lastEpoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tMax);
        _tMax = tMax;
        _etaMin = etaMin;
        InitialStep();
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<double> ComputeLr()
    {
        int e = LastEpoch;
        double t = _tMax;
        if (e == 0)
        {
            return Groups.Select(g => g["lr"]).ToArray();
        }
        if (StepCount == 1 && e > 0)
        {
            return BaseLrs.Select(b => _etaMin + (b - _etaMin) * (1 + Math.Cos(e * Math.PI / t)) / 2).ToArray();
        }
        if ((e - 1 - _tMax) % (2 * _tMax) == 0)
        {
            return Groups.Select((g, i) => g["lr"] + (BaseLrs[i] - _etaMin) * (1 - Math.Cos(Math.PI / t)) / 2).ToArray();
        }
        return Groups.Select(g => (1 + Math.Cos(Math.PI * e / t)) / (1 + Math.Cos(Math.PI * (e - 1) / t)) * (g["lr"] - _etaMin) + _etaMin).ToArray();
    }
}
