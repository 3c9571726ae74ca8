namespace Higher;

public sealed partial class Tensor
{
    internal static Tensor Empty(IBackend backend, DType dtype, Shape shape) =>
        new(backend.AllocateUninitialized(dtype, shape.Numel), shape, backend);

    internal static Tensor ZerosOn(IBackend backend, DType dtype, Shape shape) =>
        new(backend.Allocate(dtype, shape.Numel), shape, backend);

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(Shape shape, DType dtype = DType.Float32, Device? device = null) =>
        ZerosOn(Backends.For(device ?? Higher.Device.Cpu), dtype, shape);

    /// <summary>A float32 CPU tensor of zeros with dimensions given as integers, as <c>torch.zeros(2, 3)</c>.</summary>
    public static Tensor Zeros(int size0, params int[] sizes) => Zeros(Dims(size0, sizes));

    /// <summary>A float32 CPU tensor of ones with dimensions given as integers, as <c>torch.ones(2, 3)</c>.</summary>
    public static Tensor Ones(int size0, params int[] sizes) => Ones(Dims(size0, sizes));

    /// <summary>Float32 CPU uniform samples on [0, 1) from <see cref="Generator.Default"/>, dimensions as integers (<c>torch.rand(2, 3)</c>).</summary>
    public static Tensor Rand(int size0, params int[] sizes) => Rand(Dims(size0, sizes));

    /// <summary>Float32 CPU standard normal samples from <see cref="Generator.Default"/>, dimensions as integers (<c>torch.randn(10, 1)</c>).</summary>
    public static Tensor Randn(int size0, params int[] sizes) => Randn(Dims(size0, sizes));

    private static Shape Dims(int size0, int[] sizes)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        var dims = new int[sizes.Length + 1];
        dims[0] = size0;
        sizes.CopyTo(dims, 1);
        return new Shape(dims);
    }

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(Shape shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 1.0, dtype, device);

    /// <summary>A tensor filled with <paramref name="value"/>.</summary>
    public static Tensor Full(Shape shape, double value, DType dtype = DType.Float32, Device? device = null) =>
        FullOn(Backends.For(device ?? Higher.Device.Cpu), dtype, shape, value);

    internal static Tensor FullOn(IBackend backend, DType dtype, Shape shape, double value)
    {
        var t = Empty(backend, dtype, shape);
        backend.Fill(t.Storage, value);
        return t;
    }

    /// <summary>A 0-d tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full(Higher.Shape.Scalar, value, dtype, device);

    /// <summary>Zeros with the shape, dtype and device of <paramref name="like"/>.</summary>
    public static Tensor ZerosLike(Tensor like) => ZerosOn(like.Backend, like.DType, like.Shape);

    /// <summary>Ones with the shape, dtype and device of <paramref name="like"/>.</summary>
    public static Tensor OnesLike(Tensor like) => FullOn(like.Backend, like.DType, like.Shape, 1.0);

    /// <summary><paramref name="value"/> everywhere, with the shape, dtype and device of <paramref name="like"/>.</summary>
    public static Tensor FullLike(Tensor like, double value) => FullOn(like.Backend, like.DType, like.Shape, value);

    /// <summary>A scalar of this tensor's dtype and device.</summary>
    internal Tensor ScalarLike(double value) => FullOn(Backend, DType, Higher.Shape.Scalar, value);

    /// <summary>
    /// A read-only scalar of this tensor's dtype and backend, to be used only as an operand of an op
    /// (never returned, stored as state or written): shared per thread where the backend allows (see
    /// <see cref="ConstantScalars"/>), else a fresh <see cref="ScalarLike"/>.
    /// </summary>
    internal Tensor ConstantScalar(double value) => ConstantScalars.Get(Backend, DType, value) ?? ScalarLike(value);

    /// <summary>Values start, start + step, ... below end (PyTorch's arange).</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (step == 0 || double.IsNaN(step) || (end - start) * step < 0 && end != start)
        {
            throw new ArgumentException($"Arange({start}, {end}, {step}): step must be non-zero and point from start to end.");
        }
        int n = (int)Math.Max(0, Math.Ceiling((end - start) / step));
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = start + i * step;
        }
        return FromArray(values, [n], device).To(dtype);
    }

    /// <summary>Values 0, 1, ..., end - 1.</summary>
    public static Tensor Arange(int end, DType dtype = DType.Int64, Device? device = null) => Arange(0, end, 1, dtype, device);

    /// <summary><paramref name="steps"/> evenly spaced values from start to end inclusive.</summary>
    public static Tensor Linspace(double start, double end, int steps, DType dtype = DType.Float32, Device? device = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        var values = new double[steps];
        double step = steps > 1 ? (end - start) / (steps - 1) : 0;
        for (int i = 0; i < steps; i++)
        {
            // PyTorch fills the second half from the end, so the last value is exactly `end`
            // (and a single step is `start`).
            values[i] = i < steps / 2 || steps == 1 ? start + step * i : end - step * (steps - 1 - i);
        }
        return FromArray(values, [steps], device).To(dtype);
    }

    /// <summary>The n×n identity matrix.</summary>
    public static Tensor Eye(int n, DType dtype = DType.Float32, Device? device = null)
    {
        var values = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            values[(long)i * n + i] = 1;
        }
        return FromArray(values, [n, n], device).To(dtype);
    }

    /// <summary>A Float32 tensor from row-major data; <paramref name="shape"/> defaults to 1-D.</summary>
    public static Tensor FromArray(float[] data, Shape? shape = null, Device? device = null) => Upload<float>(data, DType.Float32, shape, device);

    /// <summary>A Float64 tensor from row-major data; <paramref name="shape"/> defaults to 1-D.</summary>
    public static Tensor FromArray(double[] data, Shape? shape = null, Device? device = null) => Upload<double>(data, DType.Float64, shape, device);

    /// <summary>An Int64 tensor from row-major data; <paramref name="shape"/> defaults to 1-D.</summary>
    public static Tensor FromArray(long[] data, Shape? shape = null, Device? device = null) => Upload<long>(data, DType.Int64, shape, device);

    /// <summary>A Bool tensor from row-major data; <paramref name="shape"/> defaults to 1-D.</summary>
    public static Tensor FromArray(bool[] data, Shape? shape = null, Device? device = null) => Upload<bool>(data, DType.Bool, shape, device);

    /// <summary>A Float32 tensor from a 2-D array.</summary>
    public static Tensor FromArray(float[,] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var flat = new float[data.Length];
        Buffer.BlockCopy(data, 0, flat, 0, flat.Length * sizeof(float));
        return FromArray(flat, new Shape(data.GetLength(0), data.GetLength(1)));
    }

    /// <summary>A Float64 tensor from a 2-D array.</summary>
    public static Tensor FromArray(double[,] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var flat = new double[data.Length];
        Buffer.BlockCopy(data, 0, flat, 0, flat.Length * sizeof(double));
        return FromArray(flat, new Shape(data.GetLength(0), data.GetLength(1)));
    }

    private static Tensor Upload<T>(T[] data, DType dtype, Shape? shape, Device? device) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        var s = shape ?? new Shape(data.Length);
        if (s.Numel != data.Length)
        {
            throw new ArgumentException($"Cannot view {data.Length} elements as shape {s} ({s.Numel} elements).", nameof(shape));
        }
        var backend = Backends.For(device ?? Higher.Device.Cpu);
        return new Tensor(backend.Upload<T>(data, dtype), s, backend);
    }

    /// <summary>Uniform samples on [0, 1) from <paramref name="generator"/> (default: <see cref="Generator.Default"/>).</summary>
    public static Tensor Rand(Shape shape, DType dtype = DType.Float32, Generator? generator = null, Device? device = null) =>
        Uniform(shape, 0, 1, dtype, generator, device);

    /// <summary>Uniform samples on [low, high).</summary>
    public static Tensor Uniform(Shape shape, double low, double high, DType dtype = DType.Float32, Generator? generator = null, Device? device = null) =>
        Random(shape, RandomDistribution.Uniform, low, high, dtype, generator, device);

    /// <summary>Standard normal samples.</summary>
    public static Tensor Randn(Shape shape, DType dtype = DType.Float32, Generator? generator = null, Device? device = null) =>
        Random(shape, RandomDistribution.Normal, 0, 1, dtype, generator, device);

    /// <summary>Normal samples with the given mean and standard deviation.</summary>
    public static Tensor Normal(Shape shape, double mean, double std, DType dtype = DType.Float32, Generator? generator = null, Device? device = null) =>
        Random(shape, RandomDistribution.Normal, mean, std, dtype, generator, device);

    private static Tensor Random(Shape shape, RandomDistribution distribution, double a, double b, DType dtype, Generator? generator, Device? device)
    {
        if (!dtype.IsFloatingPoint())
        {
            throw new ArgumentException($"Random draws are Float32 or Float64, not {dtype.Name()}.", nameof(dtype));
        }
        var backend = Backends.For(device ?? Higher.Device.Cpu);
        var g = generator ?? Generator.Default;
        var t = Empty(backend, dtype, shape);
        backend.Random(t.Storage, distribution, g.Seed, g.Reserve(shape.Numel), a, b);
        return t;
    }
}
