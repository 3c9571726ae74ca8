using System.Globalization;

namespace Higher.GradCheck;

/// <summary>
/// One gradcheck case: a function of float64 inputs, the inputs, and the tolerances. Every float
/// tensor the function reads is an input (index tensors and masks are captured), so a case can be
/// re-run in another dtype or on another device.
/// </summary>
/// <param name="Name">The op and its drawn parameters, for messages.</param>
/// <param name="F">The function under test.</param>
/// <param name="Inputs">Float64 inputs, on the case's device.</param>
public sealed record OpCase(string Name, Func<Tensor[], Tensor> F, Tensor[] Inputs)
{
    /// <summary>Central-difference step.</summary>
    public double Eps { get; init; } = 1e-6;

    /// <summary>Absolute tolerance.</summary>
    public double Atol { get; init; } = 1e-5;

    /// <summary>Relative tolerance.</summary>
    public double Rtol { get; init; } = 1e-3;

    /// <summary>Description of the inputs for messages.</summary>
    public string Describe() =>
        Name + " with inputs " + string.Join(", ", Inputs.Select(t => t.Shape.ToString()));
}

/// <summary>
/// Draws shapes, values and indices for a case from a seed, with Higher's own counter-based
/// generator (Philox), so the same seed gives the same case on every device: shapes, axes and
/// indices are drawn on the host, float values by the device's random kernel at the same counters.
/// </summary>
public sealed class CaseGen(ulong seed, Device device)
{
    /// <summary>The stream every draw comes from.</summary>
    public Generator Rng { get; } = new(seed);

    /// <summary>The seed of <see cref="Rng"/>.</summary>
    public ulong Seed => seed;

    /// <summary>Device the inputs are created on.</summary>
    public Device Device => device;

    /// <summary>Largest element count of one input (finite differences cost one forward per element).</summary>
    public const int MaxNumel = 24;

    /// <summary>Uniform integer in [lo, hi].</summary>
    public int Int(int lo, int hi) => lo + Rng.NextInt(hi - lo + 1);

    /// <summary>True with probability <paramref name="p"/>.</summary>
    public bool Chance(double p) => Rng.NextDouble() < p;

    /// <summary>Uniform double in [lo, hi).</summary>
    public double Real(double lo, double hi) => lo + (hi - lo) * Rng.NextDouble();

    /// <summary>One of <paramref name="options"/>.</summary>
    public T Pick<T>(params T[] options) => options[Rng.NextInt(options.Length)];

    /// <summary>
    /// A random shape of rank in [minRank, maxRank] with dimensions in [1, maxDim] (size-1 dimensions
    /// come often), at most <see cref="MaxNumel"/> elements; with <paramref name="allowEmpty"/> one
    /// dimension is sometimes 0.
    /// </summary>
    public int[] Dims(int minRank = 0, int maxRank = 3, int maxDim = 4, bool allowEmpty = false, int maxNumel = MaxNumel)
    {
        while (true)
        {
            int rank = Int(minRank, maxRank);
            var dims = new int[rank];
            long numel = 1;
            for (int d = 0; d < rank; d++)
            {
                dims[d] = Chance(0.25) ? 1 : Int(1, maxDim);
                numel *= dims[d];
            }
            if (allowEmpty && rank > 0 && Chance(0.1))
            {
                dims[Int(0, rank - 1)] = 0;
                return dims;
            }
            if (numel <= maxNumel)
            {
                return dims;
            }
        }
    }

    /// <summary>Same as <see cref="Dims"/>, as a <see cref="Higher.Shape"/>.</summary>
    public Shape Shape(int minRank = 0, int maxRank = 3, int maxDim = 4, bool allowEmpty = false) => new(Dims(minRank, maxRank, maxDim, allowEmpty));

    /// <summary>
    /// Shapes of <paramref name="count"/> operands that broadcast together: a target shape, then per
    /// operand some leading dimensions dropped and some dimensions set to 1.
    /// </summary>
    public Shape[] BroadcastShapes(int count, bool allowEmpty = false, int maxRank = 3)
    {
        var target = Dims(0, maxRank, 3, allowEmpty);
        var shapes = new Shape[count];
        for (int s = 0; s < count; s++)
        {
            int drop = Chance(0.3) ? Int(0, target.Length) : 0;
            var dims = target[drop..];
            for (int d = 0; d < dims.Length; d++)
            {
                if (Chance(0.3))
                {
                    dims[d] = 1;
                }
            }
            shapes[s] = new Shape(dims);
        }
        // Keep one operand full-shaped now and then, the commonest case in practice.
        if (Chance(0.3))
        {
            shapes[Int(0, count - 1)] = new Shape(target);
        }
        return shapes;
    }

    /// <summary>Uniform values on [lo, hi).</summary>
    public Tensor Uniform(Shape shape, double lo, double hi) => Tensor.Uniform(shape, lo, hi, DType.Float64, Rng, Device);

    /// <summary>Normal values with the given standard deviation.</summary>
    public Tensor Normal(Shape shape, double std = 1) => Tensor.Normal(shape, 0, std, DType.Float64, Rng, Device);

    /// <summary>Values with |x| in [min, max) and a random sign: away from kinks at 0.</summary>
    public Tensor AwayFromZero(Shape shape, double min = 0.1, double max = 1.5) =>
        FromHost(shape, () => (Chance(0.5) ? -1 : 1) * Real(min, max));

    /// <summary>
    /// Distinct values: a shuffled grid with step <paramref name="spacing"/> plus jitter below a quarter
    /// step, so any two differ by at least half a step (no ties for max/min, non-degenerate variances).
    /// </summary>
    public Tensor Distinct(Shape shape, double spacing = 0.2)
    {
        int n = checked((int)shape.Numel);
        var perm = Permutation(n);
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = (perm[i] - (n - 1) / 2.0) * spacing + Real(-spacing / 4, spacing / 4);
        }
        return Tensor.FromArray(values, shape, Device);
    }

    /// <summary>Values drawn on the host by <paramref name="sample"/>, in row-major order.</summary>
    public Tensor FromHost(Shape shape, Func<double> sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        var values = new double[shape.Numel];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = sample();
        }
        return Tensor.FromArray(values, shape, Device);
    }

    /// <summary>Int64 indices in [0, bound).</summary>
    public Tensor Index(Shape shape, int bound)
    {
        var values = new long[shape.Numel];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = Rng.NextInt(bound);
        }
        return Tensor.FromArray(values, shape, Device);
    }

    /// <summary>A random bool mask.</summary>
    public Tensor Mask(Shape shape)
    {
        var values = new bool[shape.Numel];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = Chance(0.5);
        }
        return Tensor.FromArray(values, shape, Device);
    }

    /// <summary>A uniformly random permutation of 0..n-1.</summary>
    public int[] Permutation(int n)
    {
        var p = new int[n];
        for (int i = 0; i < n; i++)
        {
            p[i] = i;
        }
        for (int i = n - 1; i > 0; i--)
        {
            int j = Rng.NextInt(i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    /// <summary>A non-empty subset of the axes of a rank-<paramref name="rank"/> shape, some written negatively; null (all axes) sometimes.</summary>
    public int[]? Axes(int rank)
    {
        if (rank == 0 || Chance(0.2))
        {
            return null;
        }
        var chosen = new List<int>();
        while (chosen.Count == 0)
        {
            for (int d = 0; d < rank; d++)
            {
                if (Chance(0.5))
                {
                    chosen.Add(Chance(0.3) ? d - rank : d);
                }
            }
        }
        // Order must not matter.
        return chosen.OrderBy(_ => Rng.NextInt(1000)).ToArray();
    }

    /// <summary>An axis of a rank-<paramref name="rank"/> shape, negative now and then.</summary>
    public int Axis(int rank) => Chance(0.3) ? Int(0, rank - 1) - rank : Int(0, rank - 1);

    /// <summary>Invariant formatting for case names.</summary>
    public static string Fmt(double x) => x.ToString("G4", CultureInfo.InvariantCulture);

    /// <summary>"[a, b]" or "null" for case names.</summary>
    public static string Fmt(int[]? xs) => xs is null ? "null" : "[" + string.Join(", ", xs) + "]";
}
