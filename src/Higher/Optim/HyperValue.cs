namespace Higher.Optim;

/// <summary>
/// A hyperparameter in an update rule: a plain number, or a 0-d tensor that may require grad
/// (a meta-learned learning rate, beta or momentum). Arithmetic stays on doubles while every
/// operand is a double and turns into tensor ops as soon as one is a tensor, so one rule serves
/// the ordinary optimizer and the differentiable one, and a tensor hyperparameter receives
/// gradient through every term it enters (bias corrections included).
/// </summary>
public readonly struct HyperValue
{
    private readonly double _value;

    /// <summary>A plain number.</summary>
    public HyperValue(double value)
    {
        _value = value;
        Tensor = null;
    }

    /// <summary>
    /// A tensor value (one element). While a task-batched differentiable optimizer runs an update rule
    /// over T tasks, a tensor [T, 1, ..., 1] (one value per task, broadcasting over a task-batched
    /// parameter) is valid too, so a rule that keeps a hyperparameter in its state (ASGD's η) works per task.
    /// </summary>
    public HyperValue(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Numel != 1)
        {
            if (!IsPerTask(tensor.Shape, t_tasks))
            {
                throw new ArgumentException($"A hyperparameter tensor must have one element; got {tensor.Shape}.", nameof(tensor));
            }
            Tensor = tensor;
        }
        else
        {
            Tensor = tensor.Rank == 0 ? tensor : tensor.Reshape();
        }
        _value = double.NaN;
    }

    private HyperValue(Tensor perTask, bool _)
    {
        Tensor = perTask;
        _value = double.NaN;
    }

    // The task count of the task-batched update rule running on this thread (0: none); see PerTaskScope.
    [ThreadStatic]
    private static int t_tasks;

    /// <summary>A per-task value [T, 1, ..., 1] of a task-batched inner loop, unchecked (the caller checked the shape).</summary>
    internal static HyperValue PerTask(Tensor values) => new(values, false);

    private static bool IsPerTask(Shape shape, int tasks)
    {
        if (tasks <= 1 || shape.Rank == 0 || shape[0] != tasks)
        {
            return false;
        }
        for (int i = 1; i < shape.Rank; i++)
        {
            if (shape[i] != 1)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Makes tensors [<paramref name="tasks"/>, 1, ..., 1] valid hyperparameter values on this thread until
    /// disposed: the scope of one task-batched update rule.
    /// </summary>
    internal static PerTaskScope AllowPerTask(int tasks)
    {
        var scope = new PerTaskScope(t_tasks);
        t_tasks = tasks;
        return scope;
    }

    /// <summary>Restores the task count in force before <see cref="AllowPerTask"/>.</summary>
    internal readonly struct PerTaskScope(int previous) : IDisposable
    {
        public void Dispose() => t_tasks = previous;
    }

    /// <summary>The tensor, or null for a plain number.</summary>
    public Tensor? Tensor { get; }

    /// <summary>True for a tensor value.</summary>
    public bool IsTensor => Tensor is not null;

    /// <summary>The number (a tensor value is read without gradient).</summary>
    public double Value => Tensor is null ? _value : Tensor.Item();

    /// <summary>A plain number.</summary>
    public static implicit operator HyperValue(double value) => new(value);

    /// <summary>A tensor value.</summary>
    public static implicit operator HyperValue(Tensor tensor) => new(tensor);

    /// <summary>This value as a tensor shaped for <paramref name="like"/> (dtype and device).</summary>
    public Tensor AsTensor(Tensor like) => Tensor is null ? like.ScalarLike(_value) : Tensor.DType == like.DType && Tensor.Device == like.Device ? Tensor : Tensor.To(like.Device).To(like.DType);

    private Tensor AsTensorLike(HyperValue other) => Tensor ?? other.Tensor!.ScalarLike(_value);

    /// <summary>a + b.</summary>
    public static HyperValue operator +(HyperValue a, HyperValue b) =>
        a.Tensor is null && b.Tensor is null ? a._value + b._value : a.AsTensorLike(b) + b.AsTensorLike(a);

    /// <summary>a - b.</summary>
    public static HyperValue operator -(HyperValue a, HyperValue b) =>
        a.Tensor is null && b.Tensor is null ? a._value - b._value : a.AsTensorLike(b) - b.AsTensorLike(a);

    /// <summary>a · b.</summary>
    public static HyperValue operator *(HyperValue a, HyperValue b) =>
        a.Tensor is null && b.Tensor is null ? a._value * b._value : a.AsTensorLike(b) * b.AsTensorLike(a);

    /// <summary>a / b.</summary>
    public static HyperValue operator /(HyperValue a, HyperValue b) =>
        a.Tensor is null && b.Tensor is null ? a._value / b._value : a.AsTensorLike(b) / b.AsTensorLike(a);

    /// <summary>-a.</summary>
    public static HyperValue operator -(HyperValue a) => a.Tensor is null ? -a._value : a.Tensor.Neg();

    /// <summary>a^p.</summary>
    public HyperValue Pow(double p) => Tensor is null ? Math.Pow(_value, p) : Tensor.Pow(p);

    /// <summary>√a.</summary>
    public HyperValue Sqrt() => Tensor is null ? Math.Sqrt(_value) : Tensor.Sqrt();

    /// <summary>a^b for a hyperparameter exponent (b may be a tensor: d/db = a^b·ln a).</summary>
    public HyperValue Pow(HyperValue exponent) =>
        Tensor is null && exponent.Tensor is null ? Math.Pow(_value, exponent._value) : Higher.Tensor.Pow(AsTensorLike(exponent), exponent.AsTensorLike(this));

    /// <summary>h · x.</summary>
    public static Tensor operator *(HyperValue h, Tensor x) => h.Tensor is null ? x * h._value : h.AsTensor(x) * x;

    /// <summary>x · h.</summary>
    public static Tensor operator *(Tensor x, HyperValue h) => h * x;

    /// <summary>x / h.</summary>
    public static Tensor operator /(Tensor x, HyperValue h) => h.Tensor is null ? x / h._value : x / h.AsTensor(x);

    /// <summary>x + h.</summary>
    public static Tensor operator +(Tensor x, HyperValue h) => h.Tensor is null ? x + h._value : x + h.AsTensor(x);

    /// <summary>h - x.</summary>
    public static Tensor operator -(HyperValue h, Tensor x) => h.Tensor is null ? h._value - x : h.AsTensor(x) - x;

    /// <summary>x - h.</summary>
    public static Tensor operator -(Tensor x, HyperValue h) => h.Tensor is null ? x - h._value : x - h.AsTensor(x);

    /// <summary>h + x.</summary>
    public static Tensor operator +(HyperValue h, Tensor x) => h.Tensor is null ? h._value + x : h.AsTensor(x) + x;

    /// <summary>h / x.</summary>
    public static Tensor operator /(HyperValue h, Tensor x) => h.Tensor is null ? h._value / x : h.AsTensor(x) / x;

    /// <summary>Shows the number or the tensor.</summary>
    public override string ToString() => Tensor?.ToString() ?? _value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
