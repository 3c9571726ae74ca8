namespace Higher.Nn;

/// <summary>
/// The table that maps parameters and buffers to the tensors a functional call supplies. It follows
/// the logical flow of the call (an <see cref="AsyncLocal{T}"/>), not the thread: tasks started
/// inside the call (<c>Task.Run</c>, <c>Parallel.For</c>) and code after an <c>await</c> see the same
/// weights, while unrelated calls on other threads or tasks see their own. Bindings nest: an inner
/// binding hides an outer one for the handles it maps. Work queued with the execution context
/// suppressed (<c>ExecutionContext.SuppressFlow</c>, <c>ThreadPool.UnsafeQueueUserWorkItem</c>) or on a
/// thread created outside the call does not inherit the binding and runs on the module's own weights.
/// </summary>
public static class Binding
{
    private static readonly AsyncLocal<Frame?> Top = new();

    internal sealed class Frame(IReadOnlyDictionary<Parameter, Tensor> parameters, Dictionary<ModuleBuffer, Tensor?>? buffers, Frame? parent, int tasks = 0)
    {
        public IReadOnlyDictionary<Parameter, Tensor> Parameters { get; } = parameters;
        public Dictionary<ModuleBuffer, Tensor?>? Buffers { get; } = buffers;
        public Frame? Parent { get; } = parent;
        public int Tasks { get; } = tasks;
    }

    /// <summary>True when a functional call is in progress in this logical flow (thread, task or async method).</summary>
    public static bool IsActive => Current is not null;

    private static Frame? Current => Top.Value;

    /// <summary>
    /// The number of tasks T of the task-batched functional call in progress in this logical flow
    /// (see <see cref="Functional.InnerLoop.CreateBatched"/>), or 0 outside one. While it is set, every bound
    /// weight and buffer has a leading task dimension [T, ...] and layers take inputs [T, B, ...]:
    /// the built-in layers switch to their task-batched forms, and a module of your own can read it
    /// to do the same. The innermost binding decides: a plain binding inside a batched one is plain.
    /// </summary>
    public static int Tasks => Current?.Tasks ?? 0;

    /// <summary>
    /// Binds <paramref name="parameters"/> (and, when given, <paramref name="buffers"/>, whose entries
    /// receive the writes) in this logical flow until the returned scope is disposed.
    /// </summary>
    public static Scope Bind(IReadOnlyDictionary<Parameter, Tensor> parameters, Dictionary<ModuleBuffer, Tensor?>? buffers = null) =>
        Bind(parameters, buffers, 0);

    /// <summary>
    /// As <see cref="Bind(IReadOnlyDictionary{Parameter, Tensor}, Dictionary{ModuleBuffer, Tensor?}?)"/>, for a
    /// task-batched call over <paramref name="tasks"/> tasks (0: a plain call): the tensors carry a leading
    /// task dimension, and <see cref="Tasks"/> reads <paramref name="tasks"/> until the scope is disposed.
    /// </summary>
    public static Scope Bind(IReadOnlyDictionary<Parameter, Tensor> parameters, Dictionary<ModuleBuffer, Tensor?>? buffers, int tasks)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfNegative(tasks);
        var previous = Top.Value;
        Top.Value = new Frame(parameters, buffers, previous, tasks);
        return new Scope(previous);
    }

    internal static bool TryResolve(Parameter p, out Tensor value)
    {
        for (var f = Current; f is not null; f = f.Parent)
        {
            if (f.Parameters.TryGetValue(p, out value!))
            {
                return true;
            }
        }
        value = null!;
        return false;
    }

    internal static bool TryResolve(ModuleBuffer b, out Tensor? value)
    {
        for (var f = Current; f is not null; f = f.Parent)
        {
            if (f.Buffers is not null && f.Buffers.TryGetValue(b, out value))
            {
                return true;
            }
        }
        value = null;
        return false;
    }

    internal static bool TrySet(ModuleBuffer b, Tensor? value)
    {
        for (var f = Current; f is not null; f = f.Parent)
        {
            if (f.Buffers is not null && f.Buffers.ContainsKey(b))
            {
                f.Buffers[b] = value;
                return true;
            }
        }
        return false;
    }

    /// <summary>Restores the bindings in force before <see cref="Bind(IReadOnlyDictionary{Parameter, Tensor}, Dictionary{ModuleBuffer, Tensor?}?, int)"/>.</summary>
    public struct Scope : IDisposable
    {
        private readonly Frame? _previous;
        private bool _active;

        internal Scope(Frame? previous)
        {
            _previous = previous;
            _active = true;
        }

        /// <summary>Unbinds (once; a second dispose does nothing).</summary>
        public void Dispose()
        {
            if (_active)
            {
                _active = false;
                Top.Value = _previous;
            }
        }
    }
}
